"""Where int16 activations cost accuracy: int16_w8 with one family of ops left float, each scored against FP32.

    .venv/bin/python bench/int16_cost_bench.py DIR [--tokens 384] [--families residual_add,attention_add,...] [--keep]

DIR is an exported and calibrated folder (`quantlab export`, `quantlab calibrate`). For each family below the
bench writes the shipped int16_w8 recipe plus `no_quantize` entries for that family's ops (ai-edge-quantizer matches
`regex` against an op's output tensor names joined by ";" with a trailing ";"), quantizes it into DIR as variant
`int16cost-<family>`, scores the first `tokens` tokens of the default evaluation text against the FP32 main (one
decode per token, as the lab scores) and prints KL, top-1 and perplexity beside int16_w8's. What a family's KL drops
by when its ops are float is what its int16 rounding costs; `weights_only` (every activation float, int8 weights) is the floor. These mains are diagnostics, not NPU variants (their float
ops would run on the CPU): unless `--keep`, their files and manifest entries are removed after scoring.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# family -> [(regex, op)]: the ops whose int16 quantization is dropped (regex on the op's output tensor names)
FAMILIES: dict[str, list[tuple[str, str]]] = {
    "residual_add": [(r"NpuDecoderLayer_\d+;\d*;$", "ADD")],
    "attention_add": [(r".*NpuAttention_attn.*", "ADD"), (r".*kv_slice_k.*", "ADD")],
    "all_add": [(r".*", "ADD")],
    "mlp_product": [(r".*Gemma3MLP_mlp.*", "MUL"), (r".*Gemma3MLP_mlp.*", "GELU")],
    "rotation": [(r".*rotate\.Reflections.*", "*")],
}


# every activation float, int8 per-channel weights dequantized in the graph: the weights' own error, the floor
WEIGHTS_ONLY = "weights_only"


def recipe(base: list[dict], family: str) -> list[dict]:
    """The int16_w8 recipe with `family`'s ops left float (later entries win in ai-edge-quantizer)."""
    if family == WEIGHTS_ONLY:
        cfg = {"weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"},
               "compute_precision": "FLOAT", "explicit_dequantize": True}
        return [{"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize", "op_config": cfg}]
    return base + [{"regex": rx, "operation": op, "algorithm_key": "no_quantize", "op_config": {}}
                   for rx, op in FAMILIES[family]]


def score(folder: Path, variant: str, text: str, tokens: int) -> dict:
    from quantlab.api import evaluate_model

    t0 = time.perf_counter()
    m = evaluate_model(folder, text, variant, reference="fp32", max_tokens=tokens, decode_steps=0)
    return {"kl": m.kl, "top1": m.top1_agreement, "ppl": m.perplexity, "s": time.perf_counter() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--tokens", type=int, default=384)
    ap.add_argument("--families", default=",".join([WEIGHTS_ONLY, *FAMILIES]))
    ap.add_argument("--keep", action="store_true", help="keep the diagnostic mains and their manifest entries")
    a = ap.parse_args()
    families = a.families.split(",")
    unknown = [f for f in families if f not in FAMILIES and f != WEIGHTS_ONLY]
    if unknown:
        ap.error(f"unknown families {unknown}; choose from {', '.join([WEIGHTS_ONLY, *FAMILIES])}")

    from quantlab import manifest
    from quantlab.console import quiet
    from quantlab.api import quantize_model
    from quantlab.quantize.schemes import parse
    from quantlab.texts import default_eval_text

    text = default_eval_text()
    base = parse("int16_w8").recipe
    work = a.dir / ".int16-cost"
    work.mkdir(exist_ok=True)
    rows = {}
    with quiet(a.dir / "quantlab.log") as say:  # the libraries' output goes to DIR/quantlab.log
        if "int16_w8" not in manifest.load(a.dir).artifacts:
            quantize_model(a.dir, "int16_w8")
        rows["int16_w8 (every op int16)"] = score(a.dir, "int16_w8", text, a.tokens)
        for i, fam in enumerate(families, 1):
            say(f"[{i}/{len(families)}] {fam}: quantize, score {a.tokens} tokens")
            variant = f"int16cost-{fam}"
            path = work / f"{variant}.json"
            path.write_text(json.dumps(recipe(base, fam), indent=1))
            quantize_model(a.dir, str(path), overwrite=True)
            name = "weights only (int8), activations float" if fam == WEIGHTS_ONLY else f"{fam} float"
            rows[name] = score(a.dir, variant, text, a.tokens)
            if not a.keep:
                with manifest.edit(a.dir) as m:
                    art = m.artifacts.pop(variant)
                (a.dir / art.path).unlink(missing_ok=True)
                path.unlink()
    if not a.keep:
        work.rmdir()
    ref = rows["int16_w8 (every op int16)"]["kl"]
    print(f"\n{a.dir}: first {a.tokens} tokens of the default evaluation text, one decode per token, against FP32")
    print("| int16_w8 with | KL | share of int16_w8's KL removed | top-1 | perplexity | seconds |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['kl']:.4f} | {1 - r['kl'] / ref:+.0%} | {r['top1']:.1%} | {r['ppl']:.3f} | {r['s']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
