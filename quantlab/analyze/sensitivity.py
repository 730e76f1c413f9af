"""How much error each op group adds when it alone is quantized, at 8 and at 16 bits (everything else float).

Scored as KL(fp32 || candidate) and top-1 agreement on a window of *calibration* text, so that choosing a recipe
never looks at the evaluation text. The FP32 logits are computed once and kept in memory (tokens × vocab floats).

The rows are independent, so with `jobs` > 1 they are measured side by side: a worker process per core (as memory
allows: row_bytes), each pinned to its core with one LiteRT thread, started fresh (spawn: a forked copy of this
process would inherit LiteRT thread pools and OpenMP state whose threads did not come along) and reading the FP32
logits from a file. Quantizing a row (ai-edge-quantizer) uses one core, and LiteRT's int16 kernels gain 1.55x from
a second thread, so two rows at a time on 2 cores do more than one row on both (docs/results/2026-12-02.md §13); the
scores are the same. When the lab runs on Ray, the rows are measured by Ray actors across the cluster instead
(ray_rows.py).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlab.quantize.groups import GROUPS, build_recipe
from quantlab.calibration.capture import CapturePlan, token_windows
from quantlab.calibration.ranges import load_ranges
from quantlab.evaluate.evaluator import score
from quantlab.evaluate.scorers import CachedScorer, LiteRTScorer
from quantlab.procmon import core_queue, cores, fit_in_memory, pin_to
from quantlab.progress import steps
from quantlab.quantize.quantizer import quantize_to
from quantlab.runtime.session import ArtifactSet
from quantlab.runtime.scoring_main import scoring_main


@dataclass
class Bench:
    """An artifact folder set up to quantize and score candidate recipes quickly. `worker`: a row worker's bench
    (its own scratch files; the window and FP32 logits from the file the main bench wrote)."""

    folder: Path
    tokens: int = 256
    worker: int | None = None

    def __post_init__(self) -> None:
        from quantlab.texts import default_calibration_texts

        self.folder = Path(self.folder)
        self.fp32 = ArtifactSet(self.folder, "fp32")
        self.fp32_path = self.fp32.path("fp32")
        self.qsvs, _ = load_ranges(self.folder)
        self.tmp = self.folder / (".analyze-candidate.tflite" if self.worker is None
                                  else f".analyze-row-{self.worker}.tflite")
        if self.worker is None:
            # The window after the 2 that calibration used by default: calibration-domain text the ranges never saw.
            wins = token_windows(self.fp32, default_calibration_texts(), CapturePlan(windows=3))
            self.window = wins[-1][: self.tokens]
            # FP32 is scored once, then its main is let go; candidates share fp32's tokenizer and embedder.
            self.reference = CachedScorer(LiteRTScorer(ArtifactSet(self.folder, "fp32"))).detach([self.window])
        else:
            data = np.load(self.folder / REFERENCE_FILE)
            self.window = data["window"].tolist()
            rows = self.fp32.host.prefill_len  # as LiteRTScorer chunks
            self.reference = _Replay([data["logits"][s : s + rows] for s in range(0, len(self.window), rows)])
        self.fp32.embedder  # loaded once here, so every candidate's shallow copy shares it
        self._scored: dict[str, dict] = {}  # recipe (JSON) → its scores

    def measure(self, recipe: list[dict], path: Path | None = None, threads: int | None = None) -> dict:
        """Quantize with `recipe` (into `path`, default a scratch file) and score it against FP32. A recipe measured
        before is quantized again (the search compiles the file) but not scored again: the same recipe and ranges
        give the same file, so the same scores. The search's first candidate on each axis is a sensitivity row.
        `threads`: LiteRT threads for the scoring (default every core; 1 while a compile holds another core)."""
        out = path or self.tmp
        t0 = time.perf_counter()
        quantize_to(self.fp32_path, recipe, self.qsvs, out)
        key = json.dumps(recipe, sort_keys=True)
        if key in self._scored:
            return {**self._scored[key], "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 1),
                    "scores_reused": True}
        arts = copy.copy(self.fp32)  # same tokenizer and embedder, another main
        # scored through its scoring copy (runtime/scoring_main.py): the same logits, faster
        scoring = scoring_main(out, out.with_name(out.stem + "-scoring.tflite"), threads or arts.num_threads)
        arts.main, arts.variant = scoring.model, out.stem
        metrics, _ = score(LiteRTScorer(arts, scoring.head), self.reference, [self.window], quiet=True)
        del arts
        if scoring.path != out:
            del scoring.model
            scoring.path.unlink()
        self._scored[key] = {k: metrics[k] for k in ("kl", "top1_agreement", "perplexity")}
        return {**self._scored[key], "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 1)}

    def measure_all(self, recipes: list[list[dict]], quiet: bool = False, desc: str = "", jobs: int = 1,
                    on_ray: bool = False) -> list[dict]:
        """`measure` of each recipe; with `jobs` > 1 side by side in worker processes as far as this machine's cores
        and memory allow (see the module's docstring), with `on_ray` by Ray actors across the cluster this process is
        connected to (ray_rows.py), else one after another; every score is remembered here."""
        workers = row_workers(self.fp32_path, len(recipes), jobs)
        if (workers < 2 and not on_ray) or len(recipes) < 2:
            return [self.measure(r) for r in steps(recipes, desc=desc, quiet=quiet)]
        import multiprocessing as mp

        window = np.asarray(self.window)
        logits = np.concatenate(list(self.reference.chunks(self.window)))
        np.savez(self.folder / REFERENCE_FILE, window=window, logits=logits)
        try:
            if on_ray:
                from quantlab.analyze.ray_rows import measure_rows

                rows = measure_rows(self.folder, recipes, row_bytes(self.fp32_path) / 1e6)
                results = list(steps(rows, desc=desc, total=len(recipes), quiet=quiet))
            else:
                ctx = mp.get_context("spawn")
                cpus = core_queue(ctx, workers)
                with ctx.Pool(workers, initializer=_start_worker, initargs=(str(self.folder), cpus)) as pool:
                    results = list(steps(pool.imap(_measure_row, recipes), desc=desc, total=len(recipes),
                                         quiet=quiet))
        finally:
            (self.folder / REFERENCE_FILE).unlink(missing_ok=True)
            for f in self.folder.glob(".analyze-row-*.tflite"):
                f.unlink(missing_ok=True)
        for recipe, m in zip(recipes, results):
            self._scored[json.dumps(recipe, sort_keys=True)] = {k: m[k] for k in ("kl", "top1_agreement", "perplexity")}
        return results

    def fp32_perplexity(self) -> float:
        metrics, _ = score(self.reference, None, [self.window], quiet=True)
        return metrics["perplexity"]

    def cleanup(self) -> None:
        self.tmp.unlink(missing_ok=True)


REFERENCE_FILE = ".analyze-reference.npz"  # the window and FP32's logits, for the row workers
# A row worker peaks at about a fixed 2 GB (Python, LiteRT, ai-edge-quantizer, the window's logits) plus the FP32
# main's bytes: 270M ~3 GB (measured), 1B shape 2.3-4.6 GB seen (ps, 2026-12-03), declared 6 GB. The earlier 3x the
# FP32 main fit the 270M but declared 12 GB a row on the 1B, so its 30 rows ran one at a time (41 minutes).
ROW_FIXED_BYTES = 2.0e9
ROW_MEMORY_X = 1.0
_WORKER: Bench | None = None


class _Replay:
    """FP32's logits over the window, chunk by chunk as the main bench's reference yielded them."""

    name = "fp32"

    def __init__(self, chunks: list[np.ndarray]) -> None:
        self._chunks = chunks

    def chunks(self, window: list[int]):
        yield from self._chunks


def row_bytes(fp32_path: Path) -> float:
    """What a row worker declares it peaks at, for a model whose FP32 main is `fp32_path`."""
    return ROW_FIXED_BYTES + ROW_MEMORY_X * fp32_path.stat().st_size


def row_workers(fp32_path: Path, rows: int, jobs: int) -> int:
    """Workers for `rows` rows: at most `jobs` and one per core, as many as fit in the memory available."""
    return max(1, min(jobs, cores(), fit_in_memory(row_bytes(fp32_path)), rows))


def _start_worker(folder: str, cpus) -> None:
    global _WORKER
    cpu = cpus.get()
    pin_to({cpu})
    _WORKER = Bench(Path(folder), worker=cpu)


def _measure_row(recipe: list[dict]) -> dict:
    return _WORKER.measure(recipe)


def sensitivity(bench: Bench, quiet: bool = False, float_column: bool = False, jobs: int = 1,
                on_ray: bool = False) -> dict:
    """KL and top-1 vs FP32 with everything at int16 except one op group, which is at int8 (and, with
    `float_column`, left float: what int16 on that group costs; a diagnostic the search does not use, off by default,
    half the sensitivity's time).

    The base is int16, not float: with float everywhere else, a quantized attention core or KV cache alone cannot be
    run (LiteRT reports a null output tensor), which says nothing about the group's sensitivity. Rows carry
    `kl_8 - kl_16` (what int8 on that group costs) and `kl_16 - kl_float` (what int16 on it costs)."""
    recipes = {("all", 16): build_recipe(16, {}), ("all", 8): build_recipe(8, {})}
    for g in GROUPS:
        recipes[(g.name, 8)] = build_recipe(16, {g.name: 8})
        if float_column:
            recipes[(g.name, None)] = build_recipe(16, {g.name: None})
        if g.is_fc:  # fully-connected groups: also 4-bit weights (int16 activations), the search's other axis
            recipes[(g.name, 4)] = build_recipe(16, {}, weight_overrides={g.name: 4})
    measured = dict(zip(recipes, bench.measure_all(list(recipes.values()), quiet, "sensitivity (op groups)", jobs,
                                                           on_ray)))
    base, all8 = measured[("all", 16)], measured[("all", 8)]
    none = {"kl": None, "top1_agreement": None}
    rows = []
    for g in GROUPS:
        m8, mf, m4 = measured[(g.name, 8)], measured.get((g.name, None), none), measured.get((g.name, 4), none)
        rows.append({"group": g.name, "label": g.label, "fc": g.is_fc,
                     "kl_8": m8["kl"], "top1_8": m8["top1_agreement"],
                     "kl_16": base["kl"], "top1_16": base["top1_agreement"],
                     "kl_float": mf["kl"], "top1_float": mf["top1_agreement"],
                     "kl_w4": m4["kl"], "top1_w4": m4["top1_agreement"]})
    return {"all_int16": base, "all_int8": all8, "rows": rows}
