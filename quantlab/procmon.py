"""Process memory: this process's peak RSS, and a child process run with its peak RSS sampled."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time

import psutil

# Set by a step running as a Ray task (lab/ray_steps.py): the CPUs Ray gave it, which its affinity does not say.
THREADS_ENV = "QUANTLAB_THREADS"


def cores() -> int:
    """The cores this process may run on (its CPU affinity; a lab step running beside another is given one core of its
    own). Every thread count quantlab sets (LiteRT's interpreters, torch) comes from here, not from the machine's core
    count: two processes that each start a thread per machine core on 2 cores ran LiteRT's int16 kernels 3.7x slower
    than one thread each (docs/results/2026-12-02.md §13). A step running as a Ray task uses the CPUs it declared."""
    try:
        n = len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    given = os.environ.get(THREADS_ENV, "")
    return min(n, int(given)) if given.isdigit() and int(given) > 0 else n


def pin_to(cpus: set[int]) -> None:
    """Run this process (and what it starts) on `cpus` only, with as many threads as cores."""
    os.sched_setaffinity(0, cpus)
    _openmp_threads(len(cpus))


def core_queue(ctx, n: int):
    """A queue (of multiprocessing context `ctx`) of this process's cores for `n` spawned workers, each of which takes
    one and pins itself to it (`pin_to({queue.get()})`): a core each, in turn when there are more workers than cores."""
    mine = sorted(os.sched_getaffinity(0))
    queue = ctx.Queue()
    for i in range(n):
        queue.put(mine[i % len(mine)])
    return queue


def limit_threads(n: int) -> None:
    """Use `n` threads without pinning: for a process given `n` CPUs by a scheduler that does not pin (a Ray task);
    `cores()` then says `n`."""
    os.environ[THREADS_ENV] = str(n)
    _openmp_threads(n)


def _openmp_threads(n: int) -> None:
    """OpenMP reads OMP_NUM_THREADS when torch loads, and a torch already loaded is told directly."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    On Linux this is VmHWM of this process image: ru_maxrss would carry over the parent's peak into a child started
    with fork+exec, which made a fresh measurement process report its 16 GB parent's figure.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e3  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def fit_in_memory(per_process_bytes: float) -> int:
    """How many more processes of `per_process_bytes` fit in 80 % of the memory available now."""
    return int(psutil.virtual_memory().available * 0.8 // per_process_bytes)


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process and the children it has waited for (a step's compiler) have used.
    A forked child starts from zero, so in a lab step it is the step's own; divided by the step's wall seconds it says
    how many cores the step kept busy (what decides whether another step can run beside it)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def step_peak_mb() -> float:
    """The larger of this process's peak RSS and that of the largest child it has waited for (a lab step's compiler
    or fresh measurement process), in MB: what a step declares it needs when it runs again. A child's figure can carry
    this process's own size at the time it was forked (see peak_rss_mb), so it errs high, never low."""
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(peak_rss_mb(), child / 1e6 if sys.platform == "darwin" else child / 1e3)


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
