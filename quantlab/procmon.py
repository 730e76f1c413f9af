"""Run a child process and sample its peak RSS (with its own children), for stages that run external tools."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import psutil


def run_measured(cmd: list[str], env: dict | None = None, interval: float = 0.2) -> tuple[int, float, float, str]:
    """Run `cmd`; return (exit code, wall seconds, peak RSS in MB of its process tree, combined stdout/stderr)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env if env is not None else os.environ.copy())
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            p = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not done.is_set():
            try:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(interval)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out, _ = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        done.set()
        th.join()
    return proc.returncode, time.perf_counter() - t0, peak / 1e6, out
