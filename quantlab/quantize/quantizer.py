"""`quantlab quantize`: apply a scheme to the FP32 main with the saved calibration ranges, and record the result."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from quantlab import artifacts, manifest
from quantlab.aeq import interpreters_from_file
from quantlab.atomic import atomic_path, check_writable
from quantlab.calibration.hessians import HESSIAN_FILE, attach_hessians
from quantlab.calibration.ranges import load_ranges
from quantlab.check.graph import io_dtypes
from quantlab.procmon import peak_rss_mb
from quantlab.quantize.embedder import ensure_embedder
from quantlab.quantize.groups import int8_fc_share
from quantlab.quantize.rounding import with_rounding
from quantlab.quantize.schemes import Scheme, parse

log = logging.getLogger(__name__)


def quantize(folder: Path, scheme: Scheme | str, overwrite: bool = False, quiet: bool = False, embedder: str = "int8",
             rounding: str = "nearest") -> manifest.Artifact:
    """Write `<name>_main_<variant>.tflite` and record it in the manifest, paired with the `embedder` it ships with
    (`int8` or `fp32`, see quantlab/quantize/embedder.py; the int8 one is made here if the folder lacks it), its
    weights rounded by `rounding` (see quantlab/quantize/rounding.py); returns the main's record."""
    folder = Path(folder)
    scheme = parse(scheme) if isinstance(scheme, str) else scheme
    data = manifest.load(folder)
    out = folder / artifacts.main_file(data.model.name, scheme.name)
    check_writable(out, overwrite)
    qsvs, calib_meta = load_ranges(folder) if scheme.static else ({}, {})
    recipe, rounded = rounding_setup(folder, scheme.recipe, qsvs, rounding)
    emb_key = ensure_embedder(folder, embedder)
    t0 = time.perf_counter()
    quantize_to(folder / data.artifact("fp32").path, recipe, qsvs, out, quiet)
    seconds = time.perf_counter() - t0
    record = manifest.Artifact.of(
        out, "main", scheme.name, io_dtype=io_dtypes(out), embedder=emb_key, source="fp32",
        quantize=manifest.QuantizeRecord(
            recipe=recipe, origin=scheme.origin, recipe_digest=scheme.digest, calibration=calib_meta,
            weight_rounding=rounded, int8_fc_share=round(int8_fc_share(out), 4), seconds=round(seconds, 1),
            peak_rss_mb=round(peak_rss_mb(), 1)))
    with manifest.edit(folder) as m:
        m.artifacts[scheme.name] = record
    return record


def rounding_setup(folder: Path, recipe: list[dict], qsvs: dict, rounding: str) -> tuple[list[dict], str]:
    """The recipe and ranges (Hessians attached, in place) for `rounding`, and what was applied: `gptq (N weight groups
    ...)`, or `nearest` (asked for, or calibration saved no Hessians: a logged line says so)."""
    rounded = with_rounding(recipe, rounding)
    if rounding != "gptq":
        return rounded, rounding
    n = attach_hessians(qsvs, folder / HESSIAN_FILE)
    if not n:
        # Not the GPTQ entries: without Hessians ai-edge-quantizer's GPTQ writes float weights into int8 tensors.
        log.warning("%s has no %s; weights rounded to nearest (for GPTQ run `quantlab calibrate %s --hessians` first)",
                    folder, HESSIAN_FILE, folder)
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
        result = q.quantize(qsvs or None, enable_progress_bar=not quiet, enable_progress_report=False,
                            serialize_to_path=str(tmp))
        del result
