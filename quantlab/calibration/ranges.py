"""`quantlab calibrate`: run calibration text through main with ai-edge-quantizer's calibrator and save the ranges.

The ranges (min/max per tensor, ai-edge-quantizer's QSVs) are computed once with a recipe that covers every op, and
reused by every scheme. K/V tensors the host copies between signatures (kv_cache_k_i / kv_slice_k_i in prefill and decode)
get one shared range, so the host moves them without requantizing; main's `embeddings` input covers the whole table.

How per-sample ranges are merged (`--ranges`):
- `min_max` (default): the smallest min and largest max over every sample. Choose it unless you have a reason not to:
  on the real 270M it is what makes int16 usable, because nothing seen in calibration is ever clipped.
- `moving_average`: ai-edge-quantizer's own default (exponential moving average, smoothing 0.95). It forgets early
  samples, so ranges end up narrower than the data (Gemma3-270M, layer 0 RoPE output: calibrated ±33, the same
  calibration text reaches ±66) and int16 clips. Kept for comparison and for users matching AEQ's defaults.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantlab import layout, manifest
from quantlab.atomic import write_text
from quantlab.calibration.capture import CapturePlan, capture_window, token_windows
from quantlab.calibration.hessians import HESSIAN_FILE, MAX_DIM, HessianAccumulator
from quantlab.errors import UserError
from quantlab.procmon import peak_rss_mb
from quantlab.aeq import alignment_utils, interpreters_from_file, signature_keys
from quantlab.progress import bar
from quantlab.runtime.float_head import headless_copy
from quantlab.runtime.session import ArtifactSet

CALIBRATION_FILE = "calibration.json"
FORMAT_VERSION = 1
RANGE_UPDATES = ("min_max", "moving_average")
# How the calibrator sees tensors: "profiler" tracks min/max inside the interpreter as ops run (the default: low
# memory); "all_tensors" keeps every tensor of a call and reads them afterwards (ai-edge-quantizer's default; needed
# only for algorithms that want more than min/max). Same ranges; bench/calibration_bench.py measures both.
CAPTURE_MODES = ("profiler", "all_tensors")


def _update_func(name: str):
    from ai_edge_quantizer.utils import qsv_utils

    if name not in RANGE_UPDATES:
        raise UserError(f"unknown range update {name!r}; choose one of {', '.join(RANGE_UPDATES)}")
    return qsv_utils.min_max_update if name == "min_max" else qsv_utils.moving_average_update


def calibrate(folder: Path, texts: list[str], plan: CapturePlan = CapturePlan(), quiet: bool = False,
              ranges: str = "min_max", capture: str = "profiler", hessians: bool = False,
              host_head: bool = True, processes: int | None = None) -> dict:
    """Calibrate `folder`'s FP32 main on `texts`; writes calibration.json (and, with `hessians`, hessians.npz for GPTQ
    weight rounding, see quantlab/calibration/hessians.py) and returns its metadata.

    host_head: calibrate a copy of the main without decode's LM head and take the logits' range from the head applied
    on the host (runtime/float_head.py; min/max ranges in profiler mode only, mains under 2 GiB): 270M 218 → 181 s, the
    same ranges but the logits' within float32 rounding. False runs the head in the model, as ai-edge-quantizer does.

    processes: at most that many windows calibrated side by side, a core each (calibration/windows.py; None: as the
    cores and memory allow). Min/max ranges without Hessians only; the ranges are the same either way."""
    if processes is not None and processes < 1:
        raise UserError(f"--processes must be at least 1, got {processes}")
    with tempfile.TemporaryDirectory(dir=folder if Path(folder).is_dir() else None, prefix=".calibrate-") as tmp:
        return _calibrate(Path(folder), texts, plan, quiet, ranges, capture, hessians,
                          Path(tmp) if host_head and ranges == "min_max" and capture == "profiler" else None,
                          processes)


@dataclass(frozen=True)
class WindowJob:
    """What a process calibrating some of the windows needs (calibrate_windows; picklable for windows.in_workers)."""

    folder: str
    calibrated: str  # the main the calibrator runs: the FP32 main, or its copy without decode's LM head
    decode_stride: int
    ranges: str
    capture: str
    head: bool  # the calibrated main ends at the LM head's input: keep decode's `logits` (the head's input)


def _calibrate(folder: Path, texts: list[str], plan: CapturePlan, quiet: bool, ranges: str, capture: str,
               hessians: bool, tmp: Path | None, processes: int | None) -> dict:
    import gc

    from quantlab.calibration.windows import in_workers, merge_min_max, window_workers

    folder = Path(folder)
    arts = ArtifactSet(folder, "fp32")
    main_path = arts.path("fp32")
    wins = token_windows(arts, texts, plan)
    if not wins:
        raise UserError("the calibration text produced no tokens; pass text files with text in them")
    _update_func(ranges)
    if capture not in CAPTURE_MODES:
        raise UserError(f"unknown capture mode {capture!r}; choose one of {', '.join(CAPTURE_MODES)}")
    t0 = time.perf_counter()
    head = headless_copy(main_path, tmp / "headless.tflite") if tmp is not None else None
    calibrated = tmp / "headless.tflite" if head is not None else main_path
    info, fp32_sha, host = arts.model_info, arts.data.artifacts["fp32"].sha256, arts.host
    table = embedding_table_range(arts)
    acc = HessianAccumulator(main_path) if hessians else None
    (folder / HESSIAN_FILE).unlink(missing_ok=True)  # never leave one from other ranges beside these
    job = WindowJob(str(folder), str(calibrated), plan.decode_stride, ranges, capture, head is not None)
    arts = None  # (the workers, or the first window, load their own)
    gc.collect()
    workers = min(processes or len(wins), window_workers(main_path, len(wins))) \
        if acc is None and ranges == "min_max" else 1
    with bar(len(wins), "calibrating (windows)", quiet) as progress:
        if workers > 1:
            parts = in_workers(job, [wins[i::workers] for i in range(workers)], progress)
        else:
            parts = [calibrate_windows(job, wins, acc, progress)]
    qsvs, counts, head_inputs = None, {}, []
    for part_qsvs, part_counts, part_inputs, _ in parts:
        qsvs = merge_min_max(qsvs, part_qsvs)
        counts = {k: counts.get(k, 0) + n for k, n in part_counts.items()}
        head_inputs += part_inputs
    if head is not None and head_inputs:  # (windows with no decode sample give none)
        lo, hi = np.inf, -np.inf
        for x in head_inputs:  # window by window: the products in the same chunks whatever the processes
            w_lo, w_hi = head.range(x)
            lo, hi = min(lo, w_lo), max(hi, w_hi)
        for name in head.names:
            qsvs[name] = {"min": np.array([lo]), "max": np.array([hi])}
    align_shared_ranges(qsvs, main_path, info.num_layers, table,
                        max(1.0, abs(host.scaling_global), abs(host.scaling_local)))
    if acc is not None:
        acc.save(folder / HESSIAN_FILE)
    meta = {
        "main_sha256": fp32_sha,
        "windows": len(wins),
        "tokens": sum(len(w) for w in wins),
        "max_position": max(len(w) for w in wins) - 1,
        "samples": counts,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "algorithm": ranges,
        "capture": capture,
        "decode_stride": plan.decode_stride,
        "host_head": head is not None,
        "embedding_range": [round(table[0], 4), round(table[1], 4)],
        "processes": workers,
    }
    if workers > 1:  # what each worker peaked at (the step's own peak is the parent's)
        meta["worker_peak_rss_mb"] = [round(p[3], 1) for p in parts]
    if acc is not None:
        meta["hessians"] = {"weight_groups": sum(g.measured for g in acc.groups.values()), "max_dim": MAX_DIM}
    save_ranges(folder / CALIBRATION_FILE, qsvs, meta)
    return meta


def calibrate_windows(job: WindowJob, wins: list[list[int]], acc: HessianAccumulator | None = None,
                      progress=None) -> tuple[dict[str, Any], dict[str, int], list[np.ndarray], float]:
    """Calibrate `wins` one after another, carrying the ranges forward: (ranges, samples per signature, decode's
    LM-head inputs of each window where `job.head`, this process's peak RSS in MB). `acc` also sums each sample's
    Hessians; `progress.update(1)` after each window."""
    import gc

    from ai_edge_quantizer import calibrator, recipe_manager

    folder = Path(job.folder)
    update = _update_func(job.ranges)
    mode = (calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED if job.capture == "profiler"
            else calibrator.CalibrationMode.CALIBRATION_PRESERVE_ALL_TENSORS)
    # A bare RecipeManager, not a Quantizer: the Quantizer parses the whole float model (4 GB for the 1B) only to
    # hold a recipe.
    recipes = recipe_manager.RecipeManager()
    recipes.load_quantization_recipe(_covering_recipe())
    qsvs, head_inputs = None, []
    counts: dict[str, int] = {}
    for w in wins:
        arts = ArtifactSet(folder, "fp32")
        data: dict[str, list] = {arts.prefill_sig: [], layout.DECODE: []}
        for sig, feed in capture_window(arts, w, job.decode_stride):
            data[sig].append(feed)
        for sig, feed in data.items():
            counts[sig] = counts.get(sig, 0) + len(feed)
        # Capture first, then let go of the capturing pipeline before the calibrator loads its own copy of main:
        # two float mains (and XNNPACK's packed weights of each) at once do not fit for the 1B.
        arts = None
        gc.collect()
        # One window at a time, carrying the ranges forward: memory stays at one window's samples. The Calibrator
        # is used directly because Quantizer.calibrate offers no choice of how samples' ranges are merged. Profiler
        # mode tracks min/max inside the interpreter as ops run instead of keeping every tensor of every op: the
        # same ranges (identical on the tiny model; a test checks) at a fraction of the memory.
        with interpreters_from_file():
            calib = calibrator.Calibrator(job.calibrated, qsv_update_func=update, mode=mode)
        if qsvs is not None:
            calib.load_model_qsvs(qsvs)
        calib.calibrate(data, recipes, cache_output=job.head)
        qsvs = calib.get_model_qsvs()
        inputs = [o[layout.LOGITS] for o in calib.get_cached_output() if layout.LOGITS in o] if job.head else []
        if inputs:  # decode's `logits` are the head's input here
            head_inputs.append(np.concatenate(inputs))
        del calib
        gc.collect()
        if acc is not None:
            for sig, feed in data.items():
                for f in feed:
                    acc.add(sig, f)
            acc.release()
        del data
        gc.collect()
        if progress is not None:
            progress.update(1)
    return qsvs, counts, head_inputs, peak_rss_mb()


def _covering_recipe() -> list[dict]:
    """A recipe with static activations on every op: the calibrator records ranges for the tensors it covers."""
    from ai_edge_quantizer import recipe

    return recipe.static_wi8_ai16()


def align_shared_ranges(qsvs: dict[str, Any], main_path: Path, n_layers: int, table: tuple[float, float],
                        rope_scale: float = 1.0) -> None:
    """Ranges that calibration alone does not decide (in place): each layer's K (and V) cache input and slice output
    get one range across both signatures; main's `embeddings` input covers the whole embedding table (`table`); RoPE
    and masks get their legal ranges (`legal_ranges`)."""
    utils = alignment_utils(main_path)
    sigs = signature_keys(main_path)
    for i in range(n_layers):
        for names in ((layout.kv_cache(kind, i), layout.kv_slice(kind, i)) for kind in "kv"):
            utils.align_quant_stats(qsvs, {s: list(names) for s in sigs})
    cover_embedding_table(qsvs, utils, sigs, table)
    for names, (lo, hi) in legal_ranges(rope_scale).items():
        for name in names:
            utils.align_quant_stats(qsvs, {s: [name] for s in sigs})
            utils.update_quant_stats(qsvs, {s: [name] for s in sigs}, np.float32(lo), np.float32(hi))


def legal_ranges(rope_scale: float = 1.0) -> dict[tuple[str, ...], tuple[float, float]]:
    """Inputs the host (or LiteRT-LM's aux model) computes, with a range known without calibration: RoPE tables are
    cos/sin (times the rotary embedding's attention scaling, 1 for Gemma3), masks are 0 or MASK_VALUE. Their
    quantization is set to exactly that range, never to the positions calibration reached (Google's bundle calibrated
    RoPE on prompts that stopped at position 421 and saturated beyond); the masks' int16 scale is then 100/32767, so
    LiteRT-LM's own int16 mask values (0 / -32767) mean 0 / -100 here too (int8: 127 / -128)."""
    return {layout.ROPE: (-rope_scale, rope_scale), (layout.MASK_GLOBAL, layout.MASK_LOCAL): (layout.MASK_VALUE, 0.0)}


def embedding_table_range(arts: ArtifactSet) -> tuple[float, float]:
    """Min and max over every row the FP32 embedder can return (the whole vocabulary, one prefill call per chunk)."""
    emb, sig, t = arts.embedder, layout.embedder_signature(arts.prefill_sig), arts.host.prefill_len
    vocab = arts.model_info.vocab_size
    lo, hi = np.inf, -np.inf
    for start in range(0, vocab, t):
        ids = np.minimum(np.arange(start, start + t), vocab - 1).astype(np.int32)[None, :]
        out = emb.run(sig, {layout.EMBEDDER_INPUT: ids})[layout.EMBEDDER_OUTPUT]
        lo, hi = min(lo, float(out.min())), max(hi, float(out.max()))
    return lo, hi


def cover_embedding_table(qsvs: dict[str, Any], utils, sigs: list[str], table: tuple[float, float]) -> None:
    """Widen main's `embeddings` input (both signatures, one range) to every row of the table (in place).

    Calibration text meets a few thousand of 262,144 tokens, and decode samples never meet BOS: calibrated alone, the
    input range clipped rarer tokens (with the residual stream rotated, the 270M's decode range was ±13.5 and its
    prefill's ±23.5: int16_w8 KL 0.34 instead of 0.04). The table is known exactly, so its range is used."""
    names = {s: [layout.EMBEDDER_OUTPUT] for s in sigs}
    lo, hi = utils.align_quant_stats(qsvs, names)
    utils.update_quant_stats(qsvs, names, np.minimum(lo, table[0]), np.maximum(hi, table[1]))


def save_ranges(path: Path, qsvs: dict[str, Any], meta: dict) -> None:
    from ai_edge_quantizer.utils.calibration_utils import NumpyEncoder

    body = {"format_version": FORMAT_VERSION, "metadata": meta, "model_qsvs": qsvs}
    write_text(path, json.dumps(body, cls=NumpyEncoder))


def load_ranges(folder: Path) -> tuple[dict[str, Any], dict]:
    """The saved ranges and their metadata; checks they belong to this folder's FP32 main."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        raise UserError(f"{folder} has no {CALIBRATION_FILE}; run `quantlab calibrate {folder}` first")
    body = json.loads(path.read_text())
    if body.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} has format_version {body.get('format_version')}; re-run `quantlab calibrate`")
    main_sha = manifest.load(folder).artifacts["fp32"].sha256
    if body["metadata"].get("main_sha256") != main_sha:
        raise UserError(f"{path} was made for another FP32 main; re-run `quantlab calibrate {folder}`")
    qsvs = body["model_qsvs"]
    for qsv in qsvs.values():
        for k in ("min", "max"):
            if k in qsv:
                qsv[k] = np.array(qsv[k])
    return qsvs, body["metadata"]
