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
import signal
import threading
import traceback
from typing import Any, Callable

import psutil

from quantlab.errors import StepKilled, UserError
from quantlab.procmon import cpu_seconds, pin_to, step_peak_mb


class Child:
    """A step running in a forked child; `conn` becomes readable when it ends (for multiprocessing.connection.wait)."""

    def __init__(self, proc, conn, name: str) -> None:
        self.proc, self.conn, self.name = proc, conn, name
        self.watch = _Watch(proc.pid)
        self.cpu_s: float | None = None  # the CPU seconds it used (procmon.cpu_seconds), once it has ended

    def finish(self) -> tuple[Any, float]:
        """Wait for the child; its result and peak RSS in MB (its exception raised here); `cpu_s` is set."""
        try:
            try:
                kind, value, peak, self.cpu_s = self.conn.recv()
            except EOFError:
                self.proc.join()
                raise StepKilled(self.name, self.proc.exitcode, self.watch.peak_mb) from None
        except BaseException:
            self.stop()
            raise
        finally:
            self.watch.stop()
            self.conn.close()
        self.proc.join()
        if kind == "error":
            raise value
        return value, peak

    def stop(self) -> None:
        """Ctrl-C reaches the child too (same process group); give it a moment to clean up its temp files."""
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()


class _InProcess:
    """Where fork is not available: the step has already run here."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value = fn()

    def finish(self) -> tuple[Any, float]:
        return self.value, step_peak_mb()


def start_isolated(fn: Callable[[], Any], name: str, cpus: set[int] | None = None) -> Child:
    """Start fn() in a forked child and return at once. `cpus`: the cores it may run on (None: this process's); every
    thread count the step sets follows them (procmon.cores), so steps given disjoint cores never oversubscribe one."""
    if not hasattr(os, "fork"):
        return _InProcess(fn)  # type: ignore[return-value]
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            if cpus:
                pin_to(cpus)
            msg = ("ok", fn(), step_peak_mb(), cpu_seconds())
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the lab, which raises it
            if not isinstance(exc, (UserError, KeyboardInterrupt)):
                traceback.print_exc()  # a bug: its traceback would not survive the pipe
            msg = ("error", exc, step_peak_mb(), cpu_seconds())
        try:
            send.send(msg)
        except Exception as exc:  # an unpicklable result or exception: say what it was
            send.send(("error", RuntimeError(f"{type(msg[1]).__name__}: {msg[1]} ({exc})"), *msg[2:]))

    proc = ctx.Process(target=child, name=f"quantlab {name}")
    proc.start()
    send.close()
    return Child(proc, recv, name)


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


CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE)


def run_retrying_crashes(fn: Callable[[], Any], name: str, tries: int = 2) -> tuple[Any, list[str]]:
    """fn() in a forked child of this process, started again (up to `tries` times in all) when the child crashes
    (a signal such as SIGSEGV: a fault inside a native library). Returns fn's result and the crashes met on the way
    ("signal 11 after 781 s"); raises the last crash's StepKilled when every try crashed. A child killed for memory
    (SIGKILL) or ending in an exception is not retried: it would end the same way again.

    Choose it for a step whose native runtime is not ours and can crash: LiteRT-LM 0.18.1's engine segfaulted once
    (in liblitert-lm.so, 13 min into a 1B-shape int16_w4 bundle's scoring), where the same scoring of the same bundle
    finished both before and on the re-run (docs/results/2026-12-07.md §8)."""
    import time

    crashes: list[str] = []
    while True:
        t0 = time.perf_counter()
        try:
            return start_isolated(fn, name).finish()[0], crashes
        except StepKilled as exc:
            sig = -(exc.exitcode or 0)
            if sig not in CRASH_SIGNALS or len(crashes) + 1 >= tries:
                raise
            crashes.append(f"signal {sig} after {time.perf_counter() - t0:.0f} s")
