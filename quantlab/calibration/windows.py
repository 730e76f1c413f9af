"""Calibration windows measured side by side: each worker process, on a core of its own, calibrates its share of the
windows (ranges.calibrate_windows) and the parent merges their ranges.

With min/max ranges the merge is exact: the smallest min and the largest max are the same whichever order the samples
were seen in, so the ranges are bit for bit those of one process taking the windows one after another (a test
checks). The calibrator's interpreter gains little from a second thread on one token's decode (the 270M's calibration
kept 1.4 of 2 cores busy); two windows one core each keep both busy. A worker holds a window's samples and its own
float main: it peaks at about WINDOW_FIXED_BYTES + WINDOW_MEMORY_X × the FP32 main's bytes (270M 5.6 GB, 1B shape
14.0 GB, measured one window at a time), so the 1B shape's windows still run one after another on a 24 GB machine.
Moving-average ranges depend on the order and GPTQ's Hessians are summed in one process: both keep one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantlab.procmon import core_queue, cores, fit_in_memory, pin_to

WINDOW_FIXED_BYTES = 3.0e9
WINDOW_MEMORY_X = 3.0


def window_workers(fp32_path: Path, windows: int) -> int:
    """How many workers to calibrate `windows` windows with: one per core, as many as fit in the memory available."""
    need = WINDOW_FIXED_BYTES + WINDOW_MEMORY_X * Path(fp32_path).stat().st_size
    return max(1, min(windows, cores(), fit_in_memory(need)))


def merge_min_max(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """Two sets of per-tensor min/max ranges as one (ai-edge-quantizer's own min/max update, tensor by tensor)."""
    from ai_edge_quantizer.utils import qsv_utils

    if a is None:
        return b
    merged = dict(a)
    for name, qsv in b.items():
        merged[name] = qsv_utils.min_max_update(a.get(name, {}), qsv)
    return merged


def in_workers(job: Any, parts: list[list[list[int]]], progress) -> list[tuple]:
    """ranges.calibrate_windows(job, part) for each part of the windows, one worker process per part, each pinned to
    a core of its own; `progress.update(n)` as a part's n windows finish. Spawned, not forked: the parent may have run
    torch, whose OpenMP does not survive a fork."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = []
    with ctx.Pool(len(parts), initializer=_start_worker, initargs=(core_queue(ctx, len(parts)),)) as pool:
        for part, res in zip(parts, pool.imap(_run, [(job, part) for part in parts])):
            results.append(res)
            progress.update(len(part))
    return results


def _start_worker(cpus) -> None:
    from quantlab.progress import report_to

    pin_to({cpus.get()})
    report_to(None)


def _run(args: tuple) -> tuple:
    from quantlab.calibration.ranges import calibrate_windows

    job, part = args
    return calibrate_windows(job, part)
