"""Shipped recipes (ai-edge-quantizer recipe JSON) and the scheme name grammar.

Name grammar: `int<A>` means A-bit activations and A-bit weights; `int<A>_w<W>` means A-bit activations and W-bit
weights. Activations are per-tensor (int8 asymmetric, int16 symmetric: LiteRT's int16 kernels need zero point 0);
weights are symmetric per-channel. Costs measured on the real Gemma3-270M are in the README.

Every recipe treats an RMSNorm as one op: its `odml.rms_norm` composite gets the scheme's activation type on its input
and output, and the arithmetic inside (the composite's decomposition, which only the CPU runs) stays float. QNN maps
the composite to its own RmsNorm, at int16 only (int8 is rejected, QNN error 3110), so `int8` keeps its norms at int16,
as litert-torch's own NPU recipe does. Mixed recipes (`quantlab analyze`) add entries per op group on top of `int16_w8`
and are named `a16_a8-<groups>`: int16 activations, int8 activations on the listed fully-connected groups (see
quantlab/analyze/groups.py), e.g. `a16_a8-lm_head` (270M: +3.7 % perplexity, int8 on 62.6 % of the weights).

| scheme     | activations            | weights               | choose it when                                         |
|------------|------------------------|-----------------------|--------------------------------------------------------|
| `int8`     | int8 asymmetric (norms int16) | int8 symmetric/channel| the NPU's fastest path; measure its accuracy first |
| `int16_w8` | int16 symmetric        | int8 symmetric/channel| accuracy close to FP32 at int8 weight size              |
| `dynamic_int8` | float; int8 per call, computed at run time | int8 symmetric/channel | the CPU (XNNPACK): litert-torch's `dynamic_int8`. QNN compiles it too (float activations on the HTP), not measured on a device |

A recipe JSON file of your own (a list of ai-edge-quantizer entries: regex over tensor names, op type, op_config,
later entries override earlier ones) is accepted wherever a scheme name is.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from quantlab.errors import UserError

SCHEMES = ("int8", "int16_w8", "dynamic_int8")
# How int8 weights are rounded (`quantlab quantize --rounding`):
# - `nearest` (default): plain round-to-nearest, ai-edge-quantizer's min/max.
# - `gptq`: ai-edge-quantizer's GPTQ on every fully-connected op, with the Hessians `quantlab calibrate --hessians`
#   saved (quantlab/calibration/hessians.py); same scales, same graph, same size. Measured on the real 270M (rotated,
#   1,279 held-out tokens vs FP32): it halves every FC's Hessian-weighted weight error, and with float activations
#   cuts the weights' KL (0.0048 -> 0.0031, PyTorch, bench/weight_rounding_bench.py); with int16 activations KL does
#   not drop (int16_w8 0.0224 -> 0.0235, ppl +2.2 -> +3.1 %) while top-1 rises (91.4 -> 93.5 %); a16_a8-lm_head
#   0.0375 -> 0.0398, top-1 88.6 -> 89.3 %. Choose it when top-1 agreement matters more than KL (+~1 min/quantize).
ROUNDINGS = ("nearest", "gptq")
# What the lab builds unless told otherwise.
DEFAULT_SCHEMES = ("int8", "int16_w8")


def scheme_names() -> list[str]:
    return list(SCHEMES)


def load_recipe(scheme: str) -> list[dict]:
    """A shipped scheme by name, or a recipe JSON file by path."""
    if scheme in SCHEMES:
        return json.loads(resources.files(__package__).joinpath(f"{scheme}.json").read_text())
    path = Path(scheme)
    if path.suffix == ".json":
        if not path.is_file():
            raise UserError(f"recipe file {path} does not exist; pass {', '.join(SCHEMES)} or an existing .json")
        try:
            recipe = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON ({exc.msg}); fix the recipe file") from None
        _validate(recipe, path)
        return recipe
    raise UserError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)} or a recipe .json file")


def with_rounding(recipe: list[dict], rounding: str) -> list[dict]:
    """`recipe` with its fully-connected weights rounded by `rounding`: for `gptq`, every min/max entry that covers
    FULLY_CONNECTED ops with static activations is followed by the same entry for FULLY_CONNECTED alone under GPTQ (so
    later entries still override it; `dynamic_int8` keeps nearest rounding); `nearest` turns any GPTQ entry into min/max.
    GPTQ without a Hessian for an op falls back to min/max."""
    if rounding not in ROUNDINGS:
        raise UserError(f"unknown rounding {rounding!r}; choose one of {', '.join(ROUNDINGS)}")
    if rounding == "nearest":  # a user recipe's own GPTQ entries too: nearest means nearest
        return [{**e, "algorithm_key": "min_max_uniform_quantize"} if e["algorithm_key"] == "GPTQ" else e
                for e in recipe]
    out = []
    for entry in recipe:
        out.append(entry)
        static = (entry.get("op_config") or {}).get("activation_tensor_config") is not None
        if static and entry["algorithm_key"] == "min_max_uniform_quantize" and entry["operation"] in ("*", "FULLY_CONNECTED"):
            out.append({**entry, "operation": "FULLY_CONNECTED", "algorithm_key": "GPTQ"})
    return out


def variant_name(scheme: str) -> str:
    """The artifact variant a scheme produces: the scheme name, or the recipe file's stem."""
    return scheme if scheme in SCHEMES else Path(scheme).stem


def _validate(recipe, path: Path) -> None:
    if not isinstance(recipe, list) or not recipe:
        raise UserError(f"{path} must hold a non-empty JSON list of recipe entries")
    for i, entry in enumerate(recipe):
        missing = {"regex", "operation", "algorithm_key"} - set(entry if isinstance(entry, dict) else {})
        if missing:
            raise UserError(f"{path} entry {i} lacks {', '.join(sorted(missing))}; see quantlab/quantize/recipes/*.json")
        try:
            re.compile(entry["regex"])
        except re.error as exc:
            raise UserError(f"{path} entry {i}: regex {entry['regex']!r} is invalid ({exc})") from None
