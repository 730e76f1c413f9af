"""How weights are rounded to their integer grid (`quantlab quantize --rounding`).

- `nearest` (default): plain round-to-nearest, ai-edge-quantizer's min/max.
- `gptq`: ai-edge-quantizer's GPTQ on every fully-connected op, with the Hessians `quantlab calibrate --hessians`
  saved (quantlab/calibration/hessians.py); same scales, same graph, same size. Measured on the real 270M (rotated,
  1,279 held-out tokens vs FP32): it halves every FC's Hessian-weighted weight error, and with float activations
  cuts the weights' KL (0.0048 -> 0.0031, PyTorch, bench/weight_rounding_bench.py); with int16 activations KL does
  not drop (int16_w8 0.0224 -> 0.0235, ppl +2.2 -> +3.1 %) while top-1 rises (91.4 -> 93.5 %); a16_a8-lm_head
  0.0375 -> 0.0398, top-1 88.6 -> 89.3 %. Choose it when top-1 agreement matters more than KL (+~1 min/quantize).
  On 4-bit weights (int16_w4, 270M, 1,279 tokens vs FP32, 2026-12-01): perplexity +188 % (nearest +655 %), KL 1.06
  (2.03), top-1 51.4 % (34.1 %): the best rounding measured there, still unusable.
- `octav`: ai-edge-quantizer's OCTAV, each channel's clipping range chosen for the smallest error instead of its max;
  for 4-bit weights (270M int16_w4: +274 %, KL 1.32, top-1 46.3 %).

ai-edge-quantizer's `MSE` is not offered: it sets each channel's scale from its RMS (clipping at ~6.9 sigma for 8
bits, ~2.6 sigma for 4), which breaks Gemma3 mains (270M, 2026-12-01: int16_w8 KL 4.26 vs 0.029 nearest on 256
tokens, int16_w4 KL 23.4 on 1,279), presumably by clipping the few large entries of the residual rotation's and the
Hadamard FCs that nearest rounding keeps exact.
"""

from __future__ import annotations

from quantlab.errors import UserError

# rounding → ai-edge-quantizer's weight algorithm for the fully-connected layers
ALGORITHMS = {"nearest": "min_max_uniform_quantize", "gptq": "GPTQ", "octav": "OCTAV"}
ROUNDINGS = tuple(ALGORITHMS)


def with_rounding(recipe: list[dict], rounding: str) -> list[dict]:
    """`recipe` with its fully-connected weights rounded by `rounding`: for `gptq` or `octav`, every min/max
    entry that covers FULLY_CONNECTED ops with static activations is followed by the same entry for FULLY_CONNECTED
    alone under that algorithm (so later entries still override it; `dynamic_int8` keeps nearest rounding);
    `nearest` turns any such entry back into min/max. GPTQ without a Hessian for an op falls back to min/max.
    OCTAV chooses each channel's clipping range for the smallest error instead of its max: for 4-bit weights."""
    if rounding not in ROUNDINGS:
        raise UserError(f"unknown rounding {rounding!r}; choose one of {', '.join(ROUNDINGS)}")
    nearest = ALGORITHMS["nearest"]
    if rounding == "nearest":  # a user recipe's own algorithm entries too: nearest means nearest
        return [{**e, "algorithm_key": nearest} if e["algorithm_key"] in ALGORITHMS.values() else e for e in recipe]
    out = []
    for entry in recipe:
        out.append(entry)
        static = (entry.get("op_config") or {}).get("activation_tensor_config") is not None
        if static and entry["algorithm_key"] == nearest and entry["operation"] in ("*", "FULLY_CONNECTED"):
            out.append({**entry, "operation": "FULLY_CONNECTED", "algorithm_key": ALGORITHMS[rounding]})
    return out
