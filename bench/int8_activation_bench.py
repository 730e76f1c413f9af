"""What int8 activations on the fully-connected layers cost, and what `--hadamard` takes back: a PyTorch simulation
on the bundled Gemma3-270M (real weights).

    .venv/bin/python bench/int8_activation_bench.py [--tokens 1279] [--groups lm_head attn_qkv attn_o mlp_in]

Every linear layer's weights are int8 per output channel (nearest); the chosen FC groups' inputs AND outputs are
fake-quantized to int8 per tensor (asymmetric, min/max over calibration windows of the calibration texts), as
ai-edge-quantizer does for an a16_a8 recipe (an int8 FC has an int8 output too); everything else stays float, so the
figures are the int8 part's own cost — a floor for the .tflite, whose int16 rest adds its own (270M int16_w8 KL 0.022).
Scored teacher-forced on the held-out evaluation text against the FP32 model. Rows: the same groups on the model as
it is, after SmoothQuant (α 0.5), and after `hadamard_fcs` (the rotations `quantlab export --hadamard` builds), each
with int8 weights alone first where it changes them.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time

import torch
import torch.nn.functional as F

GROUPS = {"lm_head": ("lm_head",), "attn_qkv": ("q_proj", "k_proj", "v_proj"), "attn_o": ("o_proj",),
          "mlp_in": ("gate_proj", "up_proj"), "mlp_down": ("down_proj",)}


def _fake_quant(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """int8 asymmetric per tensor over [min(lo, 0), max(hi, 0)] (zero exactly representable, as the quantizer does)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255
    zero = round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


def _int8_weights(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            w = m.weight.detach().float()
            s = w.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
            m.weight = torch.nn.Parameter(torch.clamp(torch.round(w / s), -127, 127) * s, requires_grad=False)


def _quantize_activations(model: torch.nn.Module, groups: list[str], windows: list[list[int]]) -> float:
    """Min/max over `windows`, then int8 fake-quant hooks on the groups' FC inputs and outputs; returns their share
    of the linear weights."""
    suffixes = tuple(s for g in groups for s in GROUPS[g])
    lins = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    chosen = {n: m for n, m in lins.items() if n.endswith(suffixes)}
    ranges: dict[str, tuple[float, float]] = {}

    def record(key: str, x: torch.Tensor) -> None:
        lo, hi = float(x.min()), float(x.max())
        old = ranges.get(key, (lo, hi))
        ranges[key] = (min(old[0], lo), max(old[1], hi))

    hooks = []
    for n, m in chosen.items():
        hooks.append(m.register_forward_pre_hook(lambda _m, a, n=n: record(n + ".in", a[0])))
        hooks.append(m.register_forward_hook(lambda _m, _a, o, n=n: record(n + ".out", o)))
    for ids in windows:
        model(torch.tensor([ids]))
    for h in hooks:
        h.remove()
    for n, m in chosen.items():
        m.register_forward_pre_hook(lambda _m, a, n=n: (_fake_quant(a[0], *ranges[n + ".in"]),))
        m.register_forward_hook(lambda _m, _a, o, n=n: _fake_quant(o, *ranges[n + ".out"]))
    return sum(m.weight.numel() for m in chosen.values()) / sum(m.weight.numel() for m in lins.values())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1279)
    ap.add_argument("--groups", nargs="+", default=["lm_head", "attn_qkv", "attn_o", "mlp_in"], choices=list(GROUPS))
    ap.add_argument("--calib-tokens", type=int, default=4096)
    a = ap.parse_args()

    from quantlab.texts import default_calibration_texts, default_eval_text
    from quantlab.export.hadamard import hadamard_fcs
    from quantlab.export.smooth import activation_maxima, smooth
    from quantlab.models.bundled import load_bundled

    torch.set_grad_enabled(False)
    lm = load_bundled()
    base, tok = lm.model, lm.tokenizer
    base.lm_head.weight = torch.nn.Parameter(base.lm_head.weight.detach().clone())  # untie: the table stays FP32
    ids = torch.tensor([tok(default_eval_text())["input_ids"][: a.tokens + 1]])
    ref = base(ids).logits[0, :-1].float()
    target, rp = ids[0, 1:], F.log_softmax(ref, -1)
    fp32 = math.exp(F.nll_loss(rp, target).item())
    stream: list[int] = []
    for t in default_calibration_texts():
        stream += tok(t)["input_ids"]
        if len(stream) >= a.calib_tokens:
            break
    bos = tok.bos_token_id
    windows = [[bos] + stream[s : s + 511] for s in range(0, a.calib_tokens, 511)]

    def score(model) -> str:
        lg = model(ids).logits[0, :-1].float()
        lp = F.log_softmax(lg, -1)
        ppl = math.exp(F.nll_loss(lp, target).item())
        kl = (rp.exp() * (rp - lp)).sum(-1).mean().item()
        top1 = (lg.argmax(-1) == ref.argmax(-1)).float().mean().item()
        return f"ppl {ppl:7.3f} ({100 * (ppl / fp32 - 1):+5.1f} %)  KL {kl:.4f}  top-1 {100 * top1:5.1f} %"

    print(f"Gemma3-270M (real weights), {a.tokens} held-out tokens teacher-forced vs FP32 (ppl {fp32:.3f}); int8 "
          f"weights everywhere, int8 activations (in and out) on {'+'.join(a.groups)}, the rest float:")
    rows = (
        ("weights only (no int8 activations)", None, []),
        ("as exported", None, a.groups),
        ("SmoothQuant α 0.5 (--smooth 0.5)", lambda m: smooth(m, activation_maxima(m, windows), 0.5), a.groups),
        ("--hadamard, weights only", hadamard_fcs, []),
        ("--hadamard", hadamard_fcs, a.groups),
    )
    for label, transform, groups in rows:
        t0 = time.perf_counter()
        model = copy.deepcopy(base)
        if transform:
            transform(model)
        _int8_weights(model)
        share = _quantize_activations(model, groups, windows) if groups else 0.0
        print(f"  {label:40s} int8-act FC weights {100 * share:5.1f} %  {score(model)}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
