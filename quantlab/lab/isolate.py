"""Run one lab step in a forked child process, so that the memory it used goes back to the system when it ends.

Each stage on its own fits a 24 GB machine at the Gemma3-1B shape (export 14.8 GB, calibrate 14.4 GB, quantize
15.8 GB, measured standalone), but in one long-lived process they did not add up that way: what export and calibration
left in the heap pushed quantize to 20.5 GB. A step run here starts from the small lab process (which itself loads no
model) and its peak is its own. The step's result (a small value) comes back through a pipe; an exception in the step,
Ctrl-C included, is raised again in the lab. While it runs, the lab samples the child's memory, so a child the system
kills (for memory) is reported with the step's name and the memory it reached. Where fork is not available the step
runs in-process.

The lab process itself never computes with torch, and must not: GNU OpenMP is not fork-safe, so a child forked from a
process whose torch has run parallel work hangs in its first torch op (tests start labs in fresh interpreters).
"""

from __future__ import annotations

import os
import threading
import traceback
from typing import Any, Callable

import psutil

from quantlab.errors import StepKilled, UserError
from quantlab.procmon import peak_rss_mb


def run_isolated(fn: Callable[[], Any], name: str) -> tuple[Any, float]:
    """(fn()'s result, the peak RSS in MB of the process that ran it)."""
    if not hasattr(os, "fork"):
        return fn(), peak_rss_mb()
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            msg = ("ok", fn(), peak_rss_mb())
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the lab, which raises it
            if not isinstance(exc, (UserError, KeyboardInterrupt)):
                traceback.print_exc()  # a bug: its traceback would not survive the pipe
            msg = ("error", exc, peak_rss_mb())
        try:
            send.send(msg)
        except Exception as exc:  # an unpicklable result or exception: say what it was
            send.send(("error", RuntimeError(f"{type(msg[1]).__name__}: {msg[1]} ({exc})"), peak_rss_mb()))

    proc = ctx.Process(target=child, name=f"quantlab {name}")
    proc.start()
    send.close()
    watch = _Watch(proc.pid)
    try:
        try:
            kind, value, peak = recv.recv()
        except EOFError:
            proc.join()
            raise StepKilled(name, proc.exitcode, watch.peak_mb) from None
    except BaseException:
        # Ctrl-C reaches the child too (same process group); give it a moment to clean up its temp files.
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
            proc.join()
        raise
    finally:
        watch.stop()
        recv.close()
    proc.join()
    if kind == "error":
        raise value
    return value, peak


class _Watch:
    """Samples a process's RSS every 0.5 s (what a killed child reached; its own VmHWM dies with it)."""

    def __init__(self, pid: int) -> None:
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._proc = psutil.Process(pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.5):
            try:
                self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 1e6)
            except psutil.Error:
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
