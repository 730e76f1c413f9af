"""Mixed-precision search: int16 everywhere, then int8 activations on fully-connected groups, cheapest first.

Greedy over the sensitivity table: FC groups are ordered by the KL each adds alone at 8 bits, and candidate k puts
the first k of them at int8 (the rest of the graph stays int16). Every candidate is quantized, scored on calibration
text, checked against the QNN rules and compiled for the NPU; one that does not compile fully is kept in the table
but never chosen. The chosen candidate is the one with the largest share of FC weights at int8 whose perplexity on
the analysis text stays within `tolerance` of FP32; if none does, the most accurate compiling one with any int8.

Each axis stops at its first candidate over the tolerance that quantizes at least one group on that axis (it is
built, checked and compiled like the others; the larger ones after it are listed as skipped): a candidate is the one
before it plus one more group, so it can be chosen only if adding a group lowered the error. On the 270M default run
of 2026-12-01 every axis rose monotonically (int8: 1.023, 1.026, 1.030, 1.042, 1.053, 1.52; 4-bit: 1.135, 1.31, 1.70,
2.56, 3.5), so the stop picks the same recipe and skips 5 of 11 candidates; measured both ways on 2026-12-02: the same
choice, 1,542 s against 2,221 s (docs/results/2026-12-02.md). `exhaustive` builds every one.

Each candidate compiles (one process, one core) while the next is scored; the compiles still queued when the scoring
ends run a core each, as memory allows (`_more_compiles`). Candidates compile at QNN's O2 level by default: the same
ops offloaded in the same partitions as O3, the level every shipped main compiles at, in an eighth of the time on
the 270M (compile/levels.py); the compile stage then compiles the chosen recipe at O3. At O3 the search keeps its
compiled files for the compile stage instead (compile/kept.py).

"Perplexity ratio" here is the larger of the measured ratio and exp(KL). On a few hundred tokens the measured ratio is
noisy (it scores one sampled token per position, and can fall below 1); exp(KL) is what the ratio tends to when the
text follows the FP32 model's own distribution, uses the whole distribution at every position, and tracked the
evaluation text's ratio on the 270M (int16_w8: KL 0.040 → exp 1.041, measured +3.0 %).
"""

from __future__ import annotations

import math
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from quantlab.quantize.groups import FC_GROUPS, build_recipe, recipe_name, weight_share
from quantlab.analyze.sensitivity import Bench
from quantlab.check.qnn_rules import check_qnn
from quantlab import manifest
from quantlab.compile.compiler import CompileFailed, compile_model
from quantlab.compile.kept import KeptCompiles, compile_key
from quantlab.compile.levels import CHECK_LEVEL, SHIP_LEVEL, check_level
from quantlab.procmon import cores, fit_in_memory
from quantlab.progress import bar


# Bumped whenever how candidates are built, measured or chosen changes, or analysis.json's format; the lab then redoes
# an older analysis.
# 2: chosen by the expected perplexity ratio max(measured, exp(KL)).
# 3: no float column by default; candidates compile while the next is scored. 4: each axis stops over the tolerance.
# 5: candidates compiled at O2 by default (compile_level).
METHOD_VERSION = 5


@dataclass(frozen=True)
class SearchConfig:
    """tolerance: allowed perplexity ratio to FP32 on the analysis text (1.05 = +5 %). soc: the NPU every candidate
    must compile for. Choose a tighter tolerance when quality matters more than NPU speed. exhaustive: build every
    candidate, also those after an axis's first one over the tolerance (a fuller size × accuracy table, ~100 s per
    270M candidate more). compile_level: QNN's optimization level for the candidates' compiles (compile/levels.py):
    O2 checks what compiles fastest; choose O3 to get the compiled sizes of the level that ships (then the compile
    stage reuses the chosen candidate's file; ~8x the compile time)."""

    tolerance: float = 1.05
    soc: str = "SM8750"
    exhaustive: bool = False
    compile_level: str = CHECK_LEVEL

    def __post_init__(self) -> None:
        if self.tolerance < 1.0:
            raise ValueError(f"tolerance must be at least 1.0 (a perplexity ratio), got {self.tolerance}")
        check_level(self.compile_level)


def _compiles(path: Path, soc: str, level: str) -> dict:
    """QNN rule check and a real compile at `level`; returns what the table needs. A compile at the level that ships
    is kept (compile/kept.py) until the search has chosen, so that the compile stage need not compile the chosen
    recipe again. Deletes `path`."""
    violations = check_qnn(path)
    try:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".analyze-compile-") as tmp:
            res = compile_model(path, soc, Path(tmp) / "candidate_aot.tflite", opt_level=level)
            kept = {}
            if level == SHIP_LEVEL:
                kept["kept_compile"] = compile_key(path, soc, True, level)
                KeptCompiles(path.parent).put(kept["kept_compile"], res.path, manifest.to_dict(res.record()))
            return {"qnn_rule_violations": len(violations), "fully_offloaded": res.fully_offloaded,
                    "coverage": res.coverage, "compiled_bytes": res.bytes, **kept}
    except CompileFailed as exc:
        return {"qnn_rule_violations": len(violations), "fully_offloaded": False, "coverage": {},
                "compile_error": str(exc)}
    finally:
        path.unlink(missing_ok=True)


def search(bench: Bench, sens: dict, cfg: SearchConfig = SearchConfig(), quiet: bool = False) -> dict:
    """Candidates (cumulative int8 FC groups), their measurements, and the chosen recipe."""
    share = weight_share(bench.fp32_path)
    kl8 = {r["group"]: r["kl_8"] for r in sens["rows"]}
    order = sorted(FC_GROUPS, key=lambda g: kl8.get(g, float("inf")))
    kl4 = {r["group"]: r["kl_w4"] for r in sens["rows"] if r.get("kl_w4") is not None}
    order4 = sorted((g for g in FC_GROUPS if g in kl4), key=kl4.get)
    fp32_ppl = bench.fp32_perplexity()
    # Two axes, each cheapest first: int8 activations on more FC groups (the NPU's faster path), then 4-bit weights on
    # more FC groups (a smaller file), int16 activations elsewhere.
    axes = [[(tuple(order[:k]), ()) for k in range(len(order) + 1)],
            [((), tuple(order4[:k])) for k in range(1, len(order4) + 1)]]
    candidates, compiles = [], []

    def build(int8: tuple, w4: tuple) -> float:
        k = len(candidates)
        recipe = build_recipe(16, {g: 8 for g in int8}, weight_overrides={g: 4 for g in w4})
        path = bench.folder / f".analyze-candidate-{k}.tflite"
        # While the previous candidate compiles on one core, score on the other: LiteRT with a thread per core beside
        # a busy core scored int16 at 3.2 tokens/s, one thread 6.6 (2 cores, docs/results/2026-12-02.md §13).
        busy = any(not f.done() for f in compiles)
        m = bench.measure(recipe, path, threads=max(1, cores() - 1) if busy else None)
        compiles.append(pool.submit(slots.run, _compiles, path, cfg.soc, cfg.compile_level))
        candidates.append({"name": recipe_name(16, int8, w4), "int8_groups": list(int8), "w4_groups": list(w4),
                           "int8_weight_share": sum(share[g] for g in int8),
                           "w4_weight_share": sum(share[g] for g in w4),
                           "perplexity_ratio": m["perplexity"] / fp32_ppl,
                           "expected_ratio": max(m["perplexity"] / fp32_ppl, math.exp(m["kl"])), **m,
                           "recipe": recipe})
        progress.update()
        return candidates[-1]["expected_ratio"]

    # Each candidate compiles (one process, one core) while the next is quantized and scored (LiteRT's threads); once
    # the scoring is done, the compiles still queued run one per core.
    slots = Slots(1)
    pool = ThreadPoolExecutor(max_workers=max(1, cores()))
    with pool, bar(sum(map(len, axes)), "mixed-precision candidates", quiet) as progress:
        skipped = walk_axes(axes, build, cfg.tolerance, cfg.exhaustive, lambda n: _shrink(progress, n))
        slots.widen(1 + _more_compiles(bench.fp32_path))
        for c, done in zip(candidates, compiles):
            c.update(done.result())
    compiled = [c for c in candidates if c["fully_offloaded"] and not c["qnn_rule_violations"]]
    ok = [c for c in compiled if c["int8_groups"]]
    within = [c for c in ok if c["expected_ratio"] <= cfg.tolerance]
    chosen = (max(within, key=lambda c: (c["int8_weight_share"], -c["kl"])) if within
              else min(ok, key=lambda c: c["kl"]) if ok else None)
    small = [c for c in compiled if c["w4_groups"] and c["expected_ratio"] <= cfg.tolerance]
    smallest = min(small, key=lambda c: (c.get("compiled_bytes") or c["bytes"], c["kl"])) if small else None
    # Kept for the compile stage: the variants the lab builds from the search, and all-int16 (the int16_w8 scheme).
    keep = [c for c in candidates if c is chosen or c is smallest or not (c["int8_groups"] or c["w4_groups"])]
    KeptCompiles(bench.folder).keep_only({c["kept_compile"] for c in keep if c.get("kept_compile")})
    for c in candidates:
        c.pop("kept_compile", None)
    return {"order": order, "order_w4": order4, "weight_share": share, "fp32_perplexity": fp32_ppl,
            "tolerance": cfg.tolerance, "soc": cfg.soc, "compile_level": cfg.compile_level, "candidates": candidates,
            "chosen": chosen["name"] if chosen else None, "chosen_within_tolerance": bool(within),
            "smallest": smallest["name"] if smallest else None,
            "skipped": [recipe_name(16, int8, w4) for int8, w4 in skipped]}


COMPILE_MEMORY_X = 2.5  # a compile peaks at about 2.5x the FP32 main's bytes (1B shape: 8.7 GB, 270M: ~2.4 GB)


def _more_compiles(fp32_path: Path) -> int:
    """How many compiles may run beside the one running: a core each, within 80 % of the memory available now."""
    return max(0, min(cores() - 1, fit_in_memory(COMPILE_MEMORY_X * fp32_path.stat().st_size)))


class Slots:
    """At most `n` calls at a time; `widen` lets more through (the compiles queued behind the search's scoring)."""

    def __init__(self, n: int) -> None:
        self._sem = threading.Semaphore(n)
        self._n = n

    def widen(self, n: int) -> None:
        for _ in range(n - self._n):
            self._sem.release()
        self._n = max(n, self._n)

    def run(self, fn, *args):
        with self._sem:
            return fn(*args)


def walk_axes(axes: list[list[tuple]], build, tolerance: float, exhaustive: bool, skip=None) -> list:
    """Build each axis's candidates in order (`build` returns a candidate's expected perplexity ratio); unless
    `exhaustive`, an axis stops after its first candidate over `tolerance` that quantizes a group on that axis, and
    `skip(n)` hears how many it leaves out. Returns the keys of the candidates not built."""
    skipped = []
    for axis in axes:
        for i, key in enumerate(axis):
            if build(*key) > tolerance and any(key) and not exhaustive:
                skipped += axis[i + 1:]
                if skip is not None:
                    skip(len(axis) - i - 1)
                break
    return skipped


def _shrink(progress, n: int) -> None:
    """Take `n` candidates the search will not build off the bar's total (the lab's progress line reads it)."""
    progress.total -= n
    progress.update(0)
