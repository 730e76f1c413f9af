"""The steps of each lab stage (see stages.py): what runs, what it needs upstream, and what it records.

Every builder takes the lab (the folder, upstream results) and a ConfigView holding only the fields its stage
declared. The steps' `run` functions execute in their own process; their `record` functions put results into the
manifest from the lab's process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quantlab import artifacts, manifest
from quantlab.lab.stages import ConfigView, Step

if TYPE_CHECKING:
    from quantlab.lab.pipeline import Lab


def export(lab: "Lab", cfg: ConfigView) -> list[Step]:
    from quantlab.layout import ExportConfig

    export_cfg = ExportConfig(prefill_len=cfg.prefill_len, cache_len=cfg.cache_len, smooth_alpha=cfg.smooth_alpha,
                              rotate=cfg.rotate, hadamard=cfg.hadamard)
    model, texts, out = cfg.model, cfg.calib_texts, cfg.out

    def run() -> dict:
        from quantlab.export import export_model
        from quantlab.models import load_model
        from quantlab.texts import load_texts

        loaded = load_model(model)
        export_model(loaded, out, export_cfg, overwrite=True, smooth_texts=load_texts(list(texts)) if texts else None)
        return {"name": loaded.name}

    name = lab.model_name
    outputs = (out / manifest.MANIFEST,) + ((out / artifacts.main_file(name, "fp32"),) if name else ())
    return [Step("export", run, outputs=outputs, memory_gb=7.5)]


def calibrate(lab: "Lab", cfg: ConfigView) -> list[Step]:
    from quantlab.calibration.capture import CapturePlan
    from quantlab.calibration.ranges import CALIBRATION_FILE

    plan, texts, out = CapturePlan(windows=cfg.calib_windows), cfg.calib_texts, cfg.out

    def run() -> dict:
        from quantlab.calibration.ranges import calibrate as calibrate_folder
        from quantlab.texts import default_calibration_texts, load_texts

        meta = calibrate_folder(out, load_texts(list(texts)) if texts else default_calibration_texts(), plan)
        return {"seconds": meta["seconds"], "samples": meta["samples"]}

    return [Step("calibrate", run, needs=("export",), parts=(repr(plan),), outputs=(out / CALIBRATION_FILE,), memory_gb=6.0)]


def analyze(lab: "Lab", cfg: ConfigView) -> list[Step]:
    from quantlab.analyze.analysis import ANALYSIS_FILE, analysis_record, load_analysis
    from quantlab.analyze.search import METHOD_VERSION, SearchConfig

    if not cfg.analyze:
        return []
    search = SearchConfig(tolerance=cfg.tolerance, soc=cfg.search_soc, exhaustive=cfg.full_search,
                          compile_level=cfg.search_opt_level)
    tokens, out, jobs, on_ray = cfg.analyze_tokens, cfg.out, len(lab.resources.slots()), lab.ray is not None

    def run() -> dict:
        from quantlab.analyze.analysis import analyze as analyze_folder

        res = analyze_folder(out, search, tokens=tokens, quiet=True, jobs=jobs, on_ray=on_ray)
        return {"chosen": res["search"]["chosen"], "smallest": res["search"]["smallest"], "seconds": res["seconds"]}

    def record(_: Any) -> None:
        with manifest.edit(out) as m:
            m.analysis = analysis_record(load_analysis(out))

    return [Step("analyze", run, needs=("calibrate",), parts=(METHOD_VERSION,), outputs=(out / ANALYSIS_FILE,),
                 record=record, memory_gb=4.5)]


def quantize(lab: "Lab", cfg: ConfigView) -> list[Step]:
    from quantlab.quantize.embedder import embedder_recipe
    from quantlab.quantize.schemes import Scheme, parse

    out, emb, name = cfg.out, cfg.embedder, lab.model_name
    steps = []
    emb_needs: tuple[str, ...] = ()
    if emb != "fp32":
        def run_embedder() -> dict:
            from quantlab.quantize.embedder import ensure_embedder

            ensure_embedder(out, emb, remake=True)
            return {}

        emb_step = f"quantize:{artifacts.embedder_key(emb)}"
        steps.append(Step(emb_step, run_embedder, needs=("export",),
                          parts=(Scheme.of(emb, "embedder", embedder_recipe(emb)).digest,),
                          outputs=(out / artifacts.embedder_file(name, emb),), memory_gb=2.0))
        emb_needs = (emb_step,)
    searched = lab.result("analyze") or {} if "analyze" in lab.built else {}
    picks = list(dict.fromkeys(n for n in (searched.get("chosen"), searched.get("smallest")) if n))
    schemes = [*cfg.schemes, *(parse(n) for n in picks if n not in {s.name for s in cfg.schemes})]
    for scheme in schemes:
        def run(scheme=scheme) -> dict:
            from quantlab.quantize.quantizer import quantize as quantize_folder

            return {"bytes": quantize_folder(out, scheme, overwrite=True, quiet=True, embedder=emb).bytes}

        searched = ("analyze",) if scheme.name in picks else ()
        steps.append(Step(f"quantize:{scheme.name}", run, needs=("calibrate", *emb_needs, *searched),
                          parts=(scheme.name, scheme.digest, emb),
                          outputs=(out / artifacts.main_file(name, scheme.name),), memory_gb=2.0))
    return steps


def check(lab: "Lab", cfg: ConfigView) -> list[Step]:
    out = cfg.out
    steps = []
    for v in lab.variants:
        def run(path=lab.path(v)) -> list[dict]:  # (no `lab` inside a step's run: it may run as a Ray task)
            from quantlab.check.litert_rules import check_litert

            return [x.as_dict() for x in check_litert(path)]

        def record(res: list[dict], v=v) -> None:
            with manifest.edit(out) as m:
                m.artifacts[v].check = manifest.CheckRecord(res)

        steps.append(Step(f"check:{v}", run, needs=(lab.producer(v),), outputs=(lab.path(v),), record=record,
                          memory_gb=2.0))
    return steps


def compile(lab: "Lab", cfg: ConfigView) -> list[Step]:  # noqa: A001 - the stage's name
    from quantlab.compile.stage import record as record_compile

    steps = []
    for v in lab.variants[1:]:
        for soc in cfg.socs:
            step = f"compile:{v}:{soc}"
            failed = (lab.result(step) or {}).get("failed")

            def run(path=lab.path(v), soc=soc) -> dict:
                from quantlab.compile.compiler import CompileFailed, compile_model

                try:
                    res = compile_model(path, soc, artifacts.aot_path(path, soc), overwrite=True)
                    return manifest.to_dict(res.record())
                except CompileFailed as exc:
                    return manifest.to_dict(manifest.CompileRecord(soc=soc, failed=True, errors=exc.errors[:20]))

            def record(res: dict, v=v, soc=soc) -> None:
                rec = manifest.from_dict(manifest.CompileRecord, res)
                record_compile(lab.path(v), rec, None if rec.failed else artifacts.aot_path(lab.path(v), soc))

            # A compile that failed has no output to check; one that succeeded must still have its file.
            outputs = () if failed else (artifacts.aot_path(lab.path(v), soc),)
            # peaks 2.3 GB on the 270M, 8.6 (int8) and 6.2 GB (int16_w4) on the 1B shape: two fit side by side there.
            # No typical seconds of its own: which scheme compiles longest differs by model (270M at O3: the searched
            # recipe 111 s, int16_w4 104, int16_w8 82, int8 61; 1B shape: int8 396, int16_w4 364, int16_w8 217,
            # searched 182; 2026-12-07 §8, §9), and a guess by scheme ordered the 270M's worse than list order.
            steps.append(Step(step, run, needs=(lab.producer(v),), parts=(soc, True), outputs=outputs,
                              record=record, memory_gb=2.5))
    return steps


def _bits(data: manifest.Manifest, v: str) -> tuple[int | None, set[int]]:
    """Variant `v`'s default activation bit width (its recipe's first entry: the one every op gets unless a later
    entry overrides it) and every weight bit width its recipe uses (None and empty for FP32)."""
    art = data.artifacts.get(v)
    configs = [e.get("op_config", {}) for e in (art.quantize.recipe if art and art.quantize else [])]
    acts = [c["activation_tensor_config"]["num_bits"] for c in configs if c.get("activation_tensor_config")]
    return (acts[0] if acts else None,
            {c["weight_tensor_config"]["num_bits"] for c in configs if c.get("weight_tensor_config")})


def bundle(lab: "Lab", cfg: ConfigView) -> list[Step]:
    from quantlab.bundle.builder import LITERT_LM_WINDOW, cache_refused

    out, name = cfg.out, lab.model_name
    if not cfg.bundles:
        return []
    data = manifest.load(out)
    window = data.host["sliding_window"]
    if window != LITERT_LM_WINDOW:
        lab.log(f"  no bundles: LiteRT-LM's NPU executor assumes a {LITERT_LM_WINDOW}-token sliding window, this model "
                f"has {window}")
        return []
    steps = []
    for v in lab.variants:
        if v in data.artifacts and cache_refused(data.artifacts[v]):
            lab.log(f"  no bundle of {v}: LiteRT-LM 0.18.1 cannot initialise int8 KV caches")
            continue
        compiled = [s.split(":")[2] for s in lab.built if s.startswith(f"compile:{v}:")
                    and not (lab.result(s) or {}).get("failed")]
        for soc in [None, *compiled]:
            def run(v=v, soc=soc) -> dict:
                from quantlab.bundle.builder import build_bundle

                return {"bytes": build_bundle(out, v, soc, overwrite=True).bytes}

            needs = (f"compile:{v}:{soc}",) if soc else (lab.producer(v),)
            steps.append(Step(f"bundle:{v}" + (f":{soc}" if soc else ""), run, needs=needs,
                              outputs=(out / artifacts.bundle_file(name, v, soc),), memory_gb=2.5))
    return steps


def evaluate(lab: "Lab", cfg: ConfigView) -> list[Step]:
    """Per variant: its CPU speed (alone on the machine), then its scoring against FP32's stored logits (after FP32's
    own scoring stored them), the per-op SNR and a sample; and its bundle through LiteRT-LM. Scorings run side by
    side as memory allows."""
    from quantlab.evaluate.evaluator import METHOD_VERSION

    out, text_path, tokens = cfg.out, cfg.eval_text, cfg.eval_tokens
    decode_steps, prompt, per_op = cfg.decode_steps, cfg.sample_prompt, cfg.per_op
    steps, data = [], manifest.load(out)
    for v in lab.variants:
        # (a quantized main's steps need its embedder's, so their keys cover the embedder it ships with)
        made_by = tuple(dict.fromkeys(("export", lab.producer(v))))

        def run_speed(v=v) -> dict:
            from quantlab.evaluate.evaluator import speed_of

            return speed_of(out, v, decode_steps)

        steps.append(Step(f"evaluate:{v}:speed", run_speed, needs=made_by, parts=(METHOD_VERSION,), exclusive=True,
                          memory_gb=2.0))

    for v in lab.variants:
        def run(v=v) -> dict:
            from quantlab.evaluate.evaluator import evaluate as evaluate_folder
            from quantlab.evaluate.tensor_error import tensor_errors
            from quantlab.runtime.session import ArtifactSet, generate
            from quantlab.texts import default_eval_text, read_text

            text = read_text(text_path) if text_path else default_eval_text()
            arts = ArtifactSet(out, v)
            res = evaluate_folder(out, text, v, None if v == "fp32" else "fp32",
                                  tokens or (arts.host.cache_len - 1), decode_steps, quiet=True, speed=False)
            if v != "fp32" and per_op:
                res.per_op = tensor_errors(out, v, text)
            res.sample = {"prompt": prompt, "text": generate(arts, prompt, 32).text}
            return manifest.to_dict(res)

        def record(res: dict, v=v) -> None:
            speed = dict(lab.result(f"evaluate:{v}:speed") or {})
            res = {**res, "peak_rss_mb_runtime": speed.pop("peak_rss_mb", None),
                   "speed": {**speed, **res["speed"]}}
            with manifest.edit(out) as m:
                m.artifacts[v].metrics = manifest.from_dict(manifest.Metrics, res)

        made_by = tuple(dict.fromkeys(("export", lab.producer(v))))
        # FP32's scoring stores the logits every other variant is compared with: they wait for it.
        after = (f"evaluate:{v}:speed",) + (("evaluate:fp32",) if v != "fp32" and "fp32" in lab.variants else ())
        steps.append(Step(f"evaluate:{v}", run, needs=made_by + after, parts=(METHOD_VERSION,),
                          outputs=(lab.path(v),), record=record, **_scoring_cost(data, v, per_op)))
        if f"bundle:{v}" in lab.built:
            steps.append(_litert_lm_step(lab, v, out, text_path, tokens, prompt, _bits(data, v)[1]))
    return steps


def _scoring_cost(data: manifest.Manifest, v: str, per_op: bool) -> dict:
    """A main's scoring: memory and typical seconds (bundled 270M with per-op SNR, 1B shape without it ÷ 3.7).
    Peaks: the per-op SNR holds every tensor of two mains (270M: 10.9 GB); FP32's scoring stores its logits (270M
    4.8 GB, 1B shape 12.8); a quantized main's alone 4.0-5.3 GB on the 1B shape (2026-12-07 §6)."""
    if v == "fp32":
        return {"base_gb": 2.0, "memory_gb": 3.0, "typical_s": 95.0}
    acts, weights = _bits(data, v)
    if per_op:
        return {"memory_gb": 12.0, "typical_s": 85.0 if acts == 8 else 145.0}
    return {"base_gb": 1.0, "memory_gb": 1.2, "typical_s": 35.0 if acts == 8 else 85.0 if 4 in weights else 75.0}


def _litert_lm_step(lab: "Lab", v: str, out, text_path, tokens, prompt, weight_bits: set[int]) -> Step:
    """The variant's bundle scored through Google's LiteRT-LM, with a sample it generates. Peaks: FP32's 3.4 GB on the
    270M, 11.4 on the 1B shape; a quantized one's 1.5-1.6 and 2.1-3.1 GB. Its 4-bit weights' kernels are the slowest:
    int16_w4's took 263 s on the 270M (int16_w8's 135, FP32's 83), 605 s on the 1B shape (2026-12-07 §1, §6)."""
    cost = ({"base_gb": 0.6, "memory_gb": 3.0, "typical_s": 80.0} if v == "fp32" else
            {"base_gb": 1.0, "memory_gb": 0.6, "typical_s": 260.0 if 4 in weight_bits else 120.0})
    key = artifacts.bundle_key(v)

    def run() -> dict:
        from quantlab.errors import StepKilled
        from quantlab.lab.isolate import CRASH_SIGNALS, run_retrying_crashes

        def measure() -> dict:
            from quantlab.evaluate.litert_lm_eval import evaluate_litert_lm
            from quantlab.runtime.session import ArtifactSet
            from quantlab.texts import default_eval_text, read_text

            text = read_text(text_path) if text_path else default_eval_text()
            n = tokens or (ArtifactSet(out, v).host.cache_len - 1)
            try:
                return manifest.to_dict(evaluate_litert_lm(out, text, v, n, sample_prompt=prompt))
            except RuntimeError as exc:  # LiteRT-LM refused the bundle: a measured result, not a failed lab
                return {"error": str(exc)}

        # LiteRT-LM's engine crashes now and then (isolate.run_retrying_crashes): a crash is retried once, and a
        # second one is this bundle's result (in the manifest and the report), not the end of the lab.
        try:
            res, crashes = run_retrying_crashes(measure, f"evaluate:{key}")
        except StepKilled as exc:
            if exc.exitcode not in tuple(-s for s in CRASH_SIGNALS):
                raise  # killed for memory, or gone some other way: the lab's error, as for any step
            return {"error": f"its engine crashed (signal {-exc.exitcode}) in each of 2 tries"}
        return {**res, "crashes": crashes} if crashes else res

    def record(res: dict) -> None:
        with manifest.edit(out) as m:
            extra = m.artifacts[key].extra
            if res.get("crashes"):
                extra["litert_lm_crashes"] = res["crashes"]
            if "error" in res:
                extra["litert_lm_error"] = res["error"]
            else:
                fields = {k: val for k, val in res.items() if k != "crashes"}
                m.artifacts[key].metrics = manifest.from_dict(manifest.Metrics, fields)

    return Step(f"evaluate:{key}", run, needs=(f"bundle:{v}",),
                outputs=(out / artifacts.bundle_file(lab.model_name, v),), record=record, **cost)


def npu_sim(lab: "Lab", cfg: ConfigView) -> list[Step]:
    out, text_path, positions = cfg.out, cfg.eval_text, cfg.npu_sim_positions
    if not cfg.npu_sim:
        return []
    steps = []
    for v in lab.variants[1:]:
        for soc in cfg.socs:
            def run(v=v, soc=soc) -> dict:
                from quantlab.evaluate.npu_sim import npu_agreement
                from quantlab.texts import default_eval_text, read_text

                return npu_agreement(out, v, soc, read_text(text_path) if text_path else default_eval_text(),
                                     positions)

            def record(res: dict, v=v, soc=soc) -> None:
                with manifest.edit(out) as m:
                    m.artifacts[v].npu_sim[soc] = res

            steps.append(Step(f"npu_sim:{v}:{soc}", run, needs=(lab.producer(v),), parts=(soc,), record=record,
                              memory_gb=4.0))
    return steps


BUILDERS = {"export": export, "calibrate": calibrate, "analyze": analyze, "quantize": quantize, "check": check,
            "compile": compile, "bundle": bundle, "evaluate": evaluate, "npu_sim": npu_sim}
