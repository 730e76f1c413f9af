"""How much error each op group adds when it alone is quantized, at 8 and at 16 bits (everything else float).

Scored as KL(fp32 || candidate) and top-1 agreement on a window of *calibration* text, so that choosing a recipe
never looks at the evaluation text. The FP32 logits are computed once and kept in memory (tokens × vocab floats).
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
from quantlab.progress import steps
from quantlab.quantize.quantizer import quantize_to
from quantlab.runtime.litert_model import LiteRTModel
from quantlab.runtime.session import ArtifactSet
from quantlab.runtime.widen_int4 import scoring_copy


@dataclass
class Bench:
    """An artifact folder set up to quantize and score candidate recipes quickly."""

    folder: Path
    tokens: int = 256

    def __post_init__(self) -> None:
        from quantlab.texts import default_calibration_texts

        self.folder = Path(self.folder)
        self.fp32 = ArtifactSet(self.folder, "fp32")
        self.fp32_path = self.fp32.path("fp32")
        self.qsvs, _ = load_ranges(self.folder)
        # The window after the 2 that calibration used by default: calibration-domain text the ranges never saw.
        wins = token_windows(self.fp32, default_calibration_texts(), CapturePlan(windows=3))
        self.window = wins[-1][: self.tokens]
        # The FP32 reference is scored once, then its main is let go; candidates share fp32's tokenizer and embedder.
        self.reference = CachedScorer(LiteRTScorer(ArtifactSet(self.folder, "fp32"))).detach([self.window])
        self.fp32.embedder  # loaded once here, so every candidate's shallow copy shares it
        self.tmp = self.folder / ".analyze-candidate.tflite"
        self._scored: dict[str, dict] = {}  # recipe (JSON) → its scores

    def measure(self, recipe: list[dict], path: Path | None = None) -> dict:
        """Quantize with `recipe` (into `path`, default a scratch file) and score it against FP32. A recipe measured
        before is quantized again (the search compiles the file) but not scored again: the same recipe and ranges
        give the same file, so the same scores. The search's first candidate on each axis is a sensitivity row."""
        out = path or self.tmp
        t0 = time.perf_counter()
        quantize_to(self.fp32_path, recipe, self.qsvs, out)
        key = json.dumps(recipe, sort_keys=True)
        if key in self._scored:
            return {**self._scored[key], "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 1),
                    "scores_reused": True}
        arts = copy.copy(self.fp32)  # same tokenizer and embedder, another main
        # 4-bit weights are scored through their int8-stored copy: the same logits, 2.5x faster on the 270M
        scored = scoring_copy(out, self.folder / ".analyze-scoring.tflite")
        arts.main, arts.variant = LiteRTModel(scored, arts.num_threads), out.stem
        metrics, _ = score(LiteRTScorer(arts), self.reference, [self.window], quiet=True)
        del arts
        if scored != out:
            scored.unlink()
        self._scored[key] = {k: metrics[k] for k in ("kl", "top1_agreement", "perplexity")}
        return {**self._scored[key], "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 1)}

    def fp32_perplexity(self) -> float:
        metrics, _ = score(self.reference, None, [self.window], quiet=True)
        return metrics["perplexity"]

    def cleanup(self) -> None:
        self.tmp.unlink(missing_ok=True)


def sensitivity(bench: Bench, quiet: bool = False, float_column: bool = False) -> dict:
    """KL and top-1 vs FP32 with everything at int16 except one op group, which is at int8 (and, with
    `float_column`, left float: what int16 on that group costs; a diagnostic the search does not use, off by default,
    half the sensitivity's time).

    The base is int16, not float: with float everywhere else, a quantized attention core or KV cache alone cannot be
    run (LiteRT reports a null output tensor), which says nothing about the group's sensitivity. Rows carry
    `kl_8 - kl_16` (what int8 on that group costs) and `kl_16 - kl_float` (what int16 on it costs)."""
    base = bench.measure(build_recipe(16, {}))
    all8 = bench.measure(build_recipe(8, {}))
    rows = []
    none = {"kl": None, "top1_agreement": None}
    for g in steps(GROUPS, desc="sensitivity (op groups)", quiet=quiet):
        m8 = bench.measure(build_recipe(16, {g.name: 8}))
        mf = bench.measure(build_recipe(16, {g.name: None})) if float_column else none
        # fully-connected groups: also 4-bit weights (int16 activations), the search's other axis
        m4 = bench.measure(build_recipe(16, {}, weight_overrides={g.name: 4})) if g.is_fc else none
        rows.append({"group": g.name, "label": g.label, "fc": g.is_fc,
                     "kl_8": m8["kl"], "top1_8": m8["top1_agreement"],
                     "kl_16": base["kl"], "top1_16": base["top1_agreement"],
                     "kl_float": mf["kl"], "top1_float": mf["top1_agreement"],
                     "kl_w4": m4["kl"], "top1_w4": m4["top1_agreement"]})
    return {"all_int16": base, "all_int8": all8, "rows": rows}
