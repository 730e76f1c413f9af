"""Op groups of main, as recipe entries, and recipes built from a bit width per group.

A group is the ops one decision covers (e.g. "every MLP down projection"). Its entries are ai-edge-quantizer recipe
(regex, operation) pairs over op output tensor names, which carry the PyTorch module path of quantlab's export. Later
entries override earlier ones, so GROUPS is ordered from broad to narrow: the attention core's "*" entry covers the
projections too until their own FULLY_CONNECTED entries, which come later, take them back.

`weight_share` says which fully-connected groups hold which share of main's weights (the LM head alone holds most of
it in Gemma3: 168 M of 268 M parameters in the 270M), the measure of "how much of the model runs at int8".
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path

from quantlab import layout
from quantlab.check.graph import read_ops

NORM = r".*(CompositeRMSNorm|odml\.rms_norm).*"
FC = "FULLY_CONNECTED"
HADAMARD = r"BlockHadamard"


@dataclass(frozen=True)
class OpGroup:
    name: str
    label: str
    entries: tuple[tuple[str, str], ...]  # (regex, operation)

    @property
    def is_fc(self) -> bool:
        return all(op == FC for _, op in self.entries)


GROUPS: tuple[OpGroup, ...] = (
    OpGroup("attention", "attention core: RoPE, scores, mask, softmax, weighted sum",
            (("NpuAttention_attn", "*"),)),
    OpGroup("kv_cache", "K/V cache inputs and new K/V slices", ((r"kv_(cache|slice)_[kv]_\d+", "*"),)),
    OpGroup("mlp_act", "MLP GELU and gate·up product", (("Gemma3MLP_mlp", "*"),)),
    OpGroup("residual", "residual adds", ((r"NpuDecoderLayer_\d+;\d*;$", "ADD"),)),
    OpGroup("norms", "RMSNorms (composite in/out)",
            tuple((NORM, op) for op in ("INPUT", "OUTPUT", "STABLEHLO_COMPOSITE"))),
    OpGroup("attn_qkv", "attention q/k/v projections", (("NpuAttention_attn", FC),)),
    OpGroup("attn_o", "attention output projection", (("Linear_o_proj", FC),)),
    OpGroup("mlp_in", "MLP gate and up projections", (("Gemma3MLP_mlp", FC),)),
    OpGroup("mlp_down", "MLP down projection", (("Linear_down_proj", FC),)),
    OpGroup("lm_head", "LM head", ((r"(logits(_\d+)?_output|Linear_lm_head)", FC),)),
)
BY_NAME = {g.name: g for g in GROUPS}
FC_GROUPS = tuple(g.name for g in GROUPS if g.is_fc)


def build_recipe(base: int | None, overrides: dict[str, int | None], weight_bits: int = 8,
                 weight_overrides: dict[str, int] | None = None) -> list[dict]:
    """Everything at `base` activation bits (None: float), each group in `overrides` at its bits; weights at
    `weight_bits`, symmetric per channel; norms' insides always float. Built with ai-edge-quantizer's RecipeManager,
    so every entry passes its checks and the list is what the quantizer itself would use.

    The norms default to int16 whenever anything is quantized: QNN rejects its RmsNorm at int8 (qnn-int8-rmsnorm)."""
    from ai_edge_quantizer import algorithm_manager, recipe_manager

    weight_overrides = weight_overrides or {}
    unknown = (set(overrides) | set(weight_overrides)) - set(BY_NAME)
    if unknown:
        raise ValueError(f"unknown op group(s) {', '.join(sorted(unknown))}; choose from {', '.join(BY_NAME)}")
    if any(not BY_NAME[g].is_fc for g in weight_overrides):
        raise ValueError("weight widths apply to fully-connected groups only: " + ", ".join(FC_GROUPS))
    rm = recipe_manager.RecipeManager()

    def add(regex: str, op: str, bits: int | None, wbits: int = weight_bits) -> None:
        if bits is None:
            rm.add_quantization_config(regex, op, None, algorithm_manager.AlgorithmName.NO_QUANTIZE)
        else:  # int8 asymmetric, int16 symmetric (LiteRT's int16 kernels need zero point 0): AEQ's own rule
            rm.add_static_config(regex, op, activation_num_bits=bits, weight_num_bits=wbits)

    add(".*", "*", base)
    # Every group is written out (at its override or the base) so a broad override never leaks into a narrower group.
    # The norms come last: their insides (named after the attention/decoder modules they sit in) must stay float.
    for g in sorted(GROUPS, key=lambda g: g.name == "norms"):
        if g.name == "norms":
            add(NORM, "*", None)
        default = (16 if base is not None else None) if g.name == "norms" else base
        for rx, op in g.entries:
            add(rx, op, overrides.get(g.name, default), weight_overrides.get(g.name, weight_bits))
    # --hadamard's rotations sit inside the attention and next to the norms; they stay at the base width whatever
    # group around them goes to int8 (int8 there would round the very tensor they exist to protect).
    add(HADAMARD, FC, base)
    return copy.deepcopy(rm.get_quantization_recipe())


def recipe_name(base: int, int8_groups: tuple[str, ...], w4_groups: tuple[str, ...] = ()) -> str:
    """A variant name that says what the recipe is: `a16`, `a16_a8-lm_head+mlp_in` (int8 activations on those FC
    groups), `a16_w4-lm_head` (4-bit weights on those), or both, `a16_a8-attn_o_w4-lm_head` (stable group order)."""
    order = FC_GROUPS + tuple(n for n in BY_NAME if n not in FC_GROUPS)
    a8 = [g for g in order if g in int8_groups]
    w4 = [g for g in order if g in w4_groups]
    return f"a{base}" + ("_a8-" + "+".join(a8) if a8 else "") + ("_w4-" + "+".join(w4) if w4 else "")


def _fc_ops(main_path: Path) -> list:
    """(op, weight elements) for every FC of decode, the signature that holds them all (prefill has no LM head)."""
    ops = [o for o in read_ops(main_path) if o.name == FC and len(o.inputs) > 1]
    sigs = {o.signature for o in ops}
    sig = layout.DECODE if layout.DECODE in sigs else (ops[0].signature if ops else None)
    return [(o, math.prod(o.inputs[1].shape)) for o in ops if o.signature == sig]


def int8_fc_share(main_path: Path) -> float:
    """Share of FC weight elements whose op takes int8 activations: how much of the model runs the NPU's int8 path."""
    fcs = _fc_ops(main_path)
    total = sum(n for _, n in fcs)
    return sum(n for o, n in fcs if o.inputs[0].dtype == "INT8") / total if total else 0.0


def weight_share(main_path: Path) -> dict[str, float]:
    """Share of main's fully-connected weight elements held by each FC group (decode signature)."""
    sizes: dict[str, int] = {g: 0 for g in FC_GROUPS}
    every = 0  # the denominator is every FC, as in int8_fc_share: the rotation's 640→1 ops are in no group
    for o, n in _fc_ops(main_path):
        every += n
        scope = ";".join(t.name for t in o.outputs) + ";"
        owner = None
        for g in GROUPS:  # last match wins, as in the recipe
            if g.is_fc and any(re.search(rx, scope) for rx, _ in g.entries):
                owner = g.name
        if owner:
            sizes[owner] += n
    return {g: n / (every or 1) for g, n in sizes.items()}
