"""`quantlab quantize`: apply a scheme (or recipe file) to the FP32 main with the saved calibration ranges."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from quantlab import layout, manifest
from quantlab.atomic import atomic_path, check_writable
from quantlab.analyze.groups import int8_fc_share
from quantlab.calibration.hessians import HESSIAN_FILE, attach_hessians
from quantlab.calibration.ranges import load_ranges
from quantlab.procmon import peak_rss_mb
from quantlab.quantize.embedder import ensure_embedder
from quantlab.quantize.recipes import load_recipe, variant_name, with_rounding
from quantlab.runtime.aeq_interpreters import interpreters_from_file
from quantlab.runtime.litert_model import LiteRTModel


def quantize(folder: Path, scheme: str, overwrite: bool = False, quiet: bool = False, embedder: str = "int8",
             rounding: str = "nearest") -> dict:
    """Write `<name>_main_<variant>.tflite` and record it in the manifest, paired with the `embedder` it ships with
    (`int8` or `fp32`, see quantlab/quantize/embedder.py; the int8 one is made here if the folder lacks it), its
    weights rounded by `rounding` (see quantlab/quantize/recipes); returns the main's record."""
    folder = Path(folder)
    data = manifest.load(folder)
    variant = variant_name(scheme)
    if variant == "fp32" or variant.startswith("embedder_"):
        raise ValueError(f"variant name {variant!r} is reserved; rename the recipe file")
    recipe = load_recipe(scheme)
    out = folder / f"{data['model']['name']}_main_{variant}.tflite"
    check_writable(out, overwrite)
    qsvs, calib_meta = load_ranges(folder)
    recipe, rounded = rounding_setup(folder, recipe, qsvs, rounding)
    emb_key = ensure_embedder(folder, embedder)["key"]
    t0 = time.perf_counter()
    quantize_to(folder / data["artifacts"]["fp32"]["path"], recipe, qsvs, out, quiet)
    seconds = time.perf_counter() - t0
    io = _io_dtypes(out)
    record = manifest.artifact_record(
        out, role="main", scheme=scheme if variant == scheme else f"recipe {Path(scheme).name}",
        recipe=recipe, io_dtype=io, int8_fc_share=round(int8_fc_share(out), 4), quantize_seconds=round(seconds, 1), quantize_peak_rss_mb=round(peak_rss_mb(), 1),
        calibration=calib_meta, embedder=emb_key, weight_rounding=rounded,
    )
    data = manifest.load(folder)  # re-read: another stage may have written meanwhile
    data["artifacts"][variant] = record
    manifest.save(folder, data)
    return record


def rounding_setup(folder: Path, recipe: list[dict], qsvs: dict, rounding: str) -> tuple[list[dict], str]:
    """The recipe and ranges (Hessians attached, in place) for `rounding`, and what was applied: `gptq (N weight groups ...)`,
    or `nearest` (asked for, or calibration saved no Hessians: a line says so)."""
    rounded = with_rounding(recipe, rounding)
    if rounding == "nearest":
        return rounded, "nearest"
    n = attach_hessians(qsvs, folder / HESSIAN_FILE)
    if not n:
        # Not the GPTQ entries: without Hessians ai-edge-quantizer's GPTQ writes float weights into int8 tensors.
        print(f"note: {folder} has no {HESSIAN_FILE}; weights rounded to nearest (for GPTQ run "
              f"`quantlab calibrate {folder} --hessians` first)", file=sys.stderr)
        return with_rounding(recipe, "nearest"), "nearest"
    return rounded, f"gptq ({n} weight groups with measured Hessians)"


def quantize_to(fp32: Path, recipe: list[dict], qsvs: dict, out: Path, quiet: bool = True) -> None:
    """Quantize the FP32 main `fp32` with `recipe` and calibration `qsvs` into `out` (written atomically)."""
    from ai_edge_quantizer import quantizer

    q = quantizer.Quantizer(str(fp32), recipe)
    # (its check that every tensor has ranges builds an interpreter just to list names: from the file, no XNNPACK)
    with atomic_path(out) as tmp, interpreters_from_file(xnnpack=False, buffer_of=fp32):
        # Serialized straight into the (memory-mapped) file, not into a bytes object written afterwards: one copy of
        # the quantized model less in memory (1 GB at the 1B shape).
        result = q.quantize(qsvs, enable_progress_bar=not quiet, enable_progress_report=False,
                            serialize_to_path=str(tmp))
        del result


def _io_dtypes(path: Path) -> dict[str, str]:
    """dtype of main's inputs and outputs by kind (embeddings, masks, rope, caches, logits)."""
    model = LiteRTModel(path)
    ins, outs = model.inputs[layout.DECODE], model.outputs[layout.DECODE]  # decode: the signature with logits
    pick = lambda specs, name: str(specs[name].dtype)  # noqa: E731
    return {
        "embeddings": pick(ins, "embeddings"),
        "masks": pick(ins, "mask_global"),
        "rope": pick(ins, "cos_global"),
        "kv_cache": pick(ins, "k_cache_0"),
        "logits": pick(outs, layout.logits_names(outs)[0]),
    }
