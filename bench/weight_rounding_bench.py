"""Nearest vs GPTQ rounding of the int8 weights, with activations left float, on the bundled Gemma3-270M (real weights).

    .venv/bin/python bench/weight_rounding_bench.py [--tokens 1279] [--calib-tokens 8192]
    .venv/bin/python bench/weight_rounding_bench.py --folder DIR --variants nearest_variant gptq_variant

First form: the PyTorch model's linear weights are replaced by their int8 per-channel values (round-to-nearest, or
ai-edge-quantizer's own GPTQ routine fed Hessians from calibration text run through PyTorch), activations float, and
the held-out evaluation text is scored teacher-forced against the FP32 model: what the weights alone cost, and what
GPTQ takes back. Second form: for two quantized mains of an artifact folder calibrated with `--hessians`, the
Hessian-weighted weight error tr(ΔW H ΔWᵀ) per FC weight shape (what GPTQ minimizes), from the files themselves.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np


def _aeq_gptq(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """ai-edge-quantizer's GPTQ (int8, symmetric, per output channel) on weight `w` with Hessian `h`; dequantized."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithms.uniform_quantize import gptq

    scale = np.maximum(np.abs(w).max(1, keepdims=True), 1e-12) / 127
    params = qtyping.UniformQuantParams(scale=scale, zero_point=np.zeros_like(scale, dtype=np.int32), num_bits=8,
                                        symmetric=True, quantized_dimension=0)
    cfg = qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE)
    q = gptq._apply_gptq(w.astype(np.float32), params, {"hessian": h.copy()}, cfg)  # noqa: SLF001 (its own routine)
    return q.quantized_data.astype(np.float32) * scale


def _nearest(w: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(w).max(1, keepdims=True), 1e-12) / 127
    return np.clip(np.round(w / scale), -127, 127) * scale


def torch_form(tokens: int, calib_tokens: int) -> None:
    import torch
    import torch.nn.functional as F

    from quantlab.texts import default_calibration_texts, default_eval_text
    from quantlab.models.bundled import load_bundled

    torch.set_grad_enabled(False)
    lm = load_bundled()
    model, tok = lm.model, lm.tokenizer
    ids = torch.tensor([tok(default_eval_text())["input_ids"][: tokens + 1]])
    ref = model(ids).logits[0, :-1].float()
    target = ids[0, 1:]
    rp = F.log_softmax(ref, -1)

    def score() -> str:
        lg = model(ids).logits[0, :-1].float()
        lp = F.log_softmax(lg, -1)
        ppl = math.exp(F.nll_loss(lp, target).item())
        kl = (rp.exp() * (rp - lp)).sum(-1).mean().item()
        top1 = (lg.argmax(-1) == ref.argmax(-1)).float().mean().item()
        return f"perplexity {ppl:7.3f}  KL {kl:.4f}  top-1 {100 * top1:5.1f} %"

    print(f"Gemma3-270M (real weights), {tokens} held-out tokens teacher-forced, activations float, vs FP32:")
    print(f"  {'fp32':28s} {score()}", flush=True)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())  # untie: the table stays FP32
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    orig = {n: m.weight.detach().float().numpy().copy() for n, m in linears.items()}
    stream: list[int] = []
    for t in default_calibration_texts():
        stream += tok(t)["input_ids"]
        if len(stream) >= calib_tokens:
            break
    hs: dict[str, np.ndarray] = {}

    def hook(name):
        def f(_m, args):
            x = args[0].reshape(-1, args[0].shape[-1]).double()
            hs[name] = hs.get(name, 0) + (x.T @ x).numpy()
        return f

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    t0 = time.perf_counter()
    for s in range(0, calib_tokens, 1024):
        model(torch.tensor([stream[s : s + 1024]]))
    for h in handles:
        h.remove()
    print(f"  (Hessians from {calib_tokens} calibration tokens in {time.perf_counter() - t0:.0f} s)")
    for label, fn, which in (
        ("nearest, every linear", lambda n, w: _nearest(w), lambda n: True),
        ("nearest, LM head only", lambda n, w: _nearest(w), lambda n: n == "lm_head"),
        ("nearest, all but LM head", lambda n, w: _nearest(w), lambda n: n != "lm_head"),
        ("GPTQ, LM head only", lambda n, w: _aeq_gptq(w, hs[n]), lambda n: n == "lm_head"),
        ("GPTQ, every linear", lambda n, w: _aeq_gptq(w, hs[n]), lambda n: True),
    ):
        t0 = time.perf_counter()
        for n, m in linears.items():
            m.weight.data.copy_(torch.from_numpy(fn(n, orig[n]) if which(n) else orig[n]))
        print(f"  {label:28s} {score()}  ({time.perf_counter() - t0:.0f} s)", flush=True)


def folder_form(folder: Path, variants: list[str]) -> None:
    from quantlab.calibration.hessians import HESSIAN_FILE, weighted_errors
    from quantlab.runtime.session import ArtifactSet

    arts = ArtifactSet(folder, "fp32")
    fp32 = arts.path("fp32")
    errs = {v: weighted_errors(fp32, arts.path(v), folder / HESSIAN_FILE) for v in variants}
    print(f"tr(dW H dW^T) per FC weight shape, {folder} (decode and prefill FCs):")
    print(f"  {'shape':14s} {'FCs':>4s} " + " ".join(f"{v:>24s}" for v in variants) + "   ratio")
    for shape in errs[variants[0]]:
        vals = [errs[v][shape][0] for v in variants]
        print(f"  {shape:14s} {errs[variants[0]][shape][1]:4d} " + " ".join(f"{x:24.4g}" for x in vals)
              + f"   {vals[-1] / vals[0]:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1279)
    ap.add_argument("--calib-tokens", type=int, default=8192)
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--variants", nargs=2, default=None, help="two variants of --folder: reference first")
    a = ap.parse_args()
    if a.folder:
        if not a.variants:
            sys.exit("--folder needs --variants A B")
        folder_form(a.folder, a.variants)
    else:
        torch_form(a.tokens, a.calib_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
