"""The stages of `quantlab run`, their checked order, skipping of unchanged work, and timings.

export → calibrate → analyze → quantize → check → compile → evaluate → report. Each stage is a list of steps (one per
scheme, variant or SoC); a step runs only if the hash of its inputs changed since it last finished (see state.py).
The analyze stage (mixed-precision search, `quantlab analyze`) adds a third variant named for its recipe.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from quantlab import manifest
from quantlab.calibration.texts import default_calibration_texts, default_eval_text, load_texts
from quantlab.errors import UserError
from quantlab.lab.config import RunConfig, text_digest
from quantlab.lab.isolate import run_isolated
from quantlab.lab.state import RunState, key_of

STAGES = ("export", "calibrate", "analyze", "quantize", "check", "compile", "evaluate", "report")
REQUIRES = {"calibrate": "export", "analyze": "calibrate", "quantize": "calibrate", "check": "quantize",
            "compile": "quantize", "evaluate": "quantize", "report": "evaluate"}


def validate_order(stages: tuple[str, ...]) -> None:
    """Every stage must come after the stage it needs; checked before anything runs."""
    for i, stage in enumerate(stages):
        need = REQUIRES.get(stage)
        if need is not None and need not in stages[:i]:
            raise ValueError(f"stage {stage!r} needs {need!r} before it; order given: {' → '.join(stages)}")


class Lab:
    def __init__(self, cfg: RunConfig, log: Callable[[str], None] = print) -> None:
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.timings: dict[str, dict] = {}

    # ---- plumbing
    def _prepare(self) -> RunState:
        out = self.out
        state_file = out / ".quantlab-run.json"
        if out.exists() and any(out.iterdir()) and not self.cfg.overwrite and not state_file.is_file():
            raise UserError(f"{out} exists and is not a quantlab run folder; pass --overwrite or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        state = RunState(out)
        if self.cfg.overwrite:
            state.steps = {}
        elif "export" in state.steps and state.steps["export"]["key"] != self._export_key():
            raise UserError(f"{out} holds a run of another model or shape; pass --overwrite or choose another --out")
        return state

    def _step(self, state: RunState, stage: str, step: str, key: str, outputs: list[Path],
              fn: Callable[[], Any]) -> Any:
        t = self.timings.setdefault(stage, {"seconds": 0.0, "ran": 0, "skipped": 0})
        if state.done(step, key, outputs):
            t["skipped"] += 1
            return state.result(step)
        t0 = time.perf_counter()
        result, peak_mb = run_isolated(fn, step)
        secs = time.perf_counter() - t0
        t["seconds"] += secs
        t["ran"] += 1
        state.record(step, key, secs, result, rss_mb=round(peak_mb, 1))
        return result

    def _data(self) -> dict:
        return manifest.load(self.out)

    def _sha(self, variant: str) -> str:
        return self._data()["artifacts"][variant]["sha256"]

    def _shipped_sha(self, variant: str) -> tuple[str, str]:
        """The main's and its embedder's hashes: what a variant's measurements depend on."""
        from quantlab.runtime.session import ArtifactSet

        return self._sha(variant), self._sha(ArtifactSet(self.out, variant).embedder_key)

    def _path(self, variant: str) -> Path:
        return self.out / self._data()["artifacts"][variant]["path"]

    def _export_key(self) -> str:
        spec = self.cfg.model
        p = Path(spec)
        ident = [str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)] if p.exists() else spec
        return key_of("export", ident, self.cfg.prefill_len, self.cfg.cache_len, self.cfg.smooth_alpha,
                      self.cfg.rotate, manifest.versions()["quantlab"])

    @property
    def schemes(self) -> list[str]:
        """The configured schemes, then the analyze stage's chosen recipe file (if it chose one)."""
        from quantlab.analyze.analysis import load_analysis, recipe_path

        extra = []
        analysis = load_analysis(self.out) if self.cfg.analyze else None
        if analysis and analysis["search"]["chosen"]:
            extra.append(str(recipe_path(self.out, analysis["search"]["chosen"])))
        return [*self.cfg.schemes, *extra]

    @property
    def variants(self) -> list[str]:
        from quantlab.quantize.recipes import variant_name

        return ["fp32", *[variant_name(s) for s in self.schemes]]

    # ---- stages
    def run(self) -> dict:
        validate_order(STAGES)
        state = self._prepare()
        self._t_all = time.perf_counter()
        for i, stage in enumerate(STAGES, 1):
            self.log(f"[{i}/{len(STAGES)} {stage}]")
            getattr(self, f"_{stage}")(state)
        return {"seconds": time.perf_counter() - self._t_all, "timings": self.timings, "out": str(self.out)}

    def _export(self, state: RunState) -> None:
        from quantlab.export import export_model
        from quantlab.models import load_model

        def do() -> dict:
            loaded = load_model(self.cfg.model)
            cfg = self.cfg.export_config()
            texts = load_texts(list(self.cfg.calib_texts)) if self.cfg.calib_texts else None
            export_model(loaded, self.out, cfg, overwrite=True, smooth_texts=texts)
            return {"name": loaded.name}

        name = self._name_hint(state)
        outs = [self.out / manifest.MANIFEST] + ([self.out / f"{name}_main_fp32.tflite"] if name else [])
        self._step(state, "export", "export", self._export_key(), outs, do)

    def _name_hint(self, state: RunState) -> str | None:
        res = state.result("export")
        return res["name"] if res else None

    def _calibrate(self, state: RunState) -> None:
        from quantlab.calibration.capture import CapturePlan
        from quantlab.calibration.ranges import CALIBRATION_FILE, calibrate

        texts_key = text_digest(self.cfg.calib_texts)
        plan = CapturePlan(windows=self.cfg.calib_windows)
        key = key_of("calibrate", self._sha("fp32"), texts_key, plan)  # the plan's repr: every sampling choice

        def do() -> dict:
            texts = load_texts(list(self.cfg.calib_texts)) if self.cfg.calib_texts else default_calibration_texts()
            return calibrate(self.out, texts, plan)

        self._step(state, "calibrate", "calibrate", key, [self.out / CALIBRATION_FILE], do)

    def _analyze(self, state: RunState) -> None:
        from quantlab.analyze.analysis import ANALYSIS_FILE, analyze
        from quantlab.analyze.search import METHOD_VERSION, SearchConfig

        if not self.cfg.analyze:
            return
        soc = self.cfg.socs[0] if self.cfg.socs else SearchConfig.soc  # the first SoC compiled for, else default
        cfg = SearchConfig(tolerance=self.cfg.tolerance, soc=soc)
        key = key_of("analyze", METHOD_VERSION, state.steps["calibrate"]["key"], cfg.tolerance, cfg.soc,
                     self.cfg.analyze_tokens)

        def do() -> dict:
            res = analyze(self.out, cfg, tokens=self.cfg.analyze_tokens, quiet=False)
            return {"chosen": res["search"]["chosen"], "seconds": res["seconds"]}

        self._step(state, "analyze", "analyze", key, [self.out / ANALYSIS_FILE], do)

    def _quantize(self, state: RunState) -> None:
        from quantlab.quantize.embedder import EMBEDDER_SCHEME, embedder_key, ensure_embedder
        from quantlab.quantize.quantizer import quantize
        from quantlab.quantize.recipes import load_recipe, variant_name

        calib_key = state.steps["calibrate"]["key"]
        name = self._name_hint(state)
        emb = embedder_key(self.cfg.embedder)
        if emb != "embedder_fp32":
            key = key_of("quantize", self._sha("embedder_fp32"), load_recipe(EMBEDDER_SCHEME))
            self._step(state, "quantize", f"quantize:{emb}", key, [self.out / f"{name}_{emb}.tflite"],
                       lambda: {"bytes": ensure_embedder(self.out, self.cfg.embedder, remake=True)["bytes"]})
        for scheme in self.schemes:
            v = variant_name(scheme)
            key = key_of("quantize", calib_key, load_recipe(scheme), emb)
            self._step(state, "quantize", f"quantize:{v}", key, [self.out / f"{name}_main_{v}.tflite"],
                       lambda s=scheme: {"bytes": quantize(self.out, s, overwrite=True, quiet=True,
                                                           embedder=self.cfg.embedder)["bytes"]})

    def _check(self, state: RunState) -> None:
        from quantlab.check.litert_rules import check_litert

        for v in self.variants:
            key = key_of("check", self._sha(v))
            res = self._step(state, "check", f"check:{v}", key, [self._path(v)],
                             lambda v=v: [x.as_dict() for x in check_litert(self._path(v))])
            self._annotate(v, "check", {"violations": res})

    def _compile(self, state: RunState) -> None:
        from quantlab.compile.compiler import CompileFailed
        from quantlab.compile.stage import compile_for_socs, compiled_path

        for v in self.variants[1:]:
            for soc in self.cfg.socs:
                step, key = f"compile:{v}:{soc}", key_of("compile", self._sha(v), soc, True)
                # A compile that failed has no output to check; one that succeeded must still have its file.
                failed = (state.result(step) or {}).get("failed")
                outputs = [] if failed else [compiled_path(self._path(v), soc)]

                def do(v=v, soc=soc) -> dict:
                    try:
                        return compile_for_socs(self._path(v), [soc], overwrite=True)[0].record()
                    except CompileFailed as exc:
                        return {"soc": soc, "failed": True, "errors": exc.errors[:20]}

                res = self._step(state, "compile", step, key, outputs, do)
                self._annotate(v, f"npu_{soc.lower()}", res)

    def _evaluate(self, state: RunState) -> None:
        from quantlab.evaluate.evaluator import METHOD_VERSION, evaluate
        from quantlab.evaluate.tensor_error import tensor_errors
        from quantlab.evaluate.windows import read_text
        from quantlab.runtime.session import ArtifactSet, generate

        text = read_text(self.cfg.eval_text) if self.cfg.eval_text else default_eval_text()
        tokens = self.cfg.eval_tokens or (self.cfg.cache_len - 1)
        text_key = text_digest((self.cfg.eval_text,)) if self.cfg.eval_text else "default"
        for v in self.variants:
            key = key_of("evaluate", METHOD_VERSION, *self._shipped_sha(v), self._sha("fp32"), text_key, tokens,
                         self.cfg.decode_steps, self.cfg.sample_prompt, *(() if self.cfg.per_op else ("no per-op",)))

            def do(v=v) -> dict:
                res = evaluate(self.out, text, v, None if v == "fp32" else "fp32", tokens, self.cfg.decode_steps,
                               quiet=False)
                if v != "fp32" and self.cfg.per_op:
                    res["per_op"] = tensor_errors(self.out, v, text)
                g = generate(ArtifactSet(self.out, v), self.cfg.sample_prompt, 32)
                res["sample"] = {"prompt": self.cfg.sample_prompt, "text": g.text}
                return res

            res = self._step(state, "evaluate", f"evaluate:{v}", key, [self._path(v)], do)
            self._annotate(v, "metrics", res)

    def _report(self, state: RunState) -> None:
        from quantlab.report.render import write_report

        self.timings.setdefault("report", {"seconds": 0.0, "ran": 0, "skipped": 0})
        t0 = time.perf_counter()
        data = self._data()
        # What the current artifacts cost to make (from when each step actually ran), and what this run did.
        data["timings_s"]["lab"] = state.stage_totals()
        data["timings_s"]["last_run"] = {**self.timings, "total": round(t0 - self._t_all, 1)}
        manifest.save(self.out, data)
        write_report(self.out)
        self.timings["report"]["seconds"] += time.perf_counter() - t0
        self.timings["report"]["ran"] += 1

    def _annotate(self, variant: str, field: str, value: Any) -> None:
        data = self._data()
        data["artifacts"][variant][field] = json.loads(json.dumps(value, default=str))
        manifest.save(self.out, data)
