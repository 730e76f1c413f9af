"""The embedder's table at int8 (or int4): which embedder a quantized main ships with.

The embedder is one EMBEDDING_LOOKUP over Gemma3's 262,144-row table, run on the host CPU. In float32 it is the
largest file in the folder (270M: 671 MB, 2.4× its int16_w8 main). ai-edge-quantizer's `dynamic_int8` recipe stores
the table as int8 with one scale per row; LiteRT's lookup dequantizes the rows it reads, so the output (and main's
input) stays float. This is what litert-torch's NPU pipeline ships (its bundle's embedder: 174 MB).

Measured on the real 270M (1,279 held-out tokens, KL against the FP32 main with the FP32 embedder): the int16_w8 main
scores KL 0.052 with the float32 embedder and 0.054 with the int8 one, same calibration (+0.002; compiled for
SM8750 the shipped pair is 455 MB against 952 MB). Choose `fp32` only to separate the main's own quantization
error from the embedder's. `int4` (4-bit per row, half the int8 table) is what a ~1B bundle needs to come near the
size Google's own ships at, but on the real 270M it does not hold quality: the int16_w8 main scores perplexity 16.50
(+47 %), KL 0.385, top-1 71.1 % with it against 11.456, 0.0195, 93.2 % with the int8 table (2026-12-03 §8). Choose
it only to measure sizes, or for a model whose table you have checked.
"""

from __future__ import annotations

from pathlib import Path

from quantlab import artifacts, manifest
from quantlab.atomic import atomic_path
from quantlab.errors import UserError

EMBEDDERS = ("int8", "int4", "fp32")
# The recipe that makes a quantized embedder (weight-only: the lookup has no activation to calibrate).
EMBEDDER_SCHEME = "dynamic_int8"


def embedder_recipe(choice: str) -> list[dict]:
    """dynamic_int8's recipe, its weights at the choice's bits (one scale per row of the table)."""
    from quantlab.quantize.schemes import parse

    recipe = parse(EMBEDDER_SCHEME).recipe
    for entry in recipe:
        entry["op_config"]["weight_tensor_config"]["num_bits"] = {"int8": 8, "int4": 4}[choice]
    return recipe


def check_choice(choice: str) -> str:
    """`choice` if it is an embedder quantlab makes, else a UserError naming the choices."""
    if choice not in EMBEDDERS:
        raise UserError(f"unknown embedder {choice!r}; choose one of {', '.join(EMBEDDERS)}")
    return choice


def ensure_embedder(folder: Path, choice: str, remake: bool = False) -> str:
    """The manifest key of the `choice` embedder in `folder`, made from the FP32 one if it is not there yet, or again
    if `remake`."""
    key = artifacts.embedder_key(check_choice(choice))
    data = manifest.load(folder)
    rec = data.artifacts.get(key)
    if rec is not None and (folder / rec.path).is_file() and not (remake and choice != "fp32"):
        return key
    src = folder / data.artifact(artifacts.embedder_key("fp32")).path
    out = folder / artifacts.embedder_file(data.model.name, choice)
    quantize_embedder(src, out, embedder_recipe(choice))
    record = manifest.Artifact.of(out, "embedder", f"dynamic_{choice}", io_dtype={"io": "float32"},
                                  source=artifacts.embedder_key("fp32"))
    with manifest.edit(folder) as m:
        m.artifacts[key] = record
    return key


def quantize_embedder(src: Path, out: Path, recipe: list[dict]) -> None:
    """Write the quantized-table embedder of the FP32 embedder `src` to `out` (atomically)."""
    from ai_edge_quantizer import quantizer

    from quantlab.aeq import interpreters_from_file

    q = quantizer.Quantizer(str(src), recipe)
    with atomic_path(out) as tmp, interpreters_from_file(xnnpack=False, buffer_of=src):
        q.quantize(enable_progress_bar=False, enable_progress_report=False, serialize_to_path=str(tmp))
