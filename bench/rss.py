"""Run a command and sample its peak RSS (with its children) — shared by the benchmarks."""

from __future__ import annotations

import subprocess
import threading
import time

import psutil


def run_measured(cmd: list[str], interval: float = 0.2) -> tuple[int, float, float, str]:
    """Run `cmd`; return (exit code, wall seconds, peak RSS in GB of the process tree, last lines of output)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(interval)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    return proc.returncode, time.perf_counter() - t0, peak / 1e9, "\n".join(out.strip().splitlines()[-5:])
