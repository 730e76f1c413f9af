"""Run one stage's steps side by side, each in its own process on cores of its own, within a memory budget.

The steps of a stage are independent of each other unless one names another in `needs` (evaluate: a variant's
scoring waits for its speed run and for FP32's stored logits). On this project's 2-core machine most steps use about
one core (export 1.04 cores, quantize 0.95, a LiteRT-LM scoring 1.05, a compile one) and LiteRT's int16 kernels gain
only 1.55x from a second thread, so two steps at a time, one core each, do more in the same wall time; what stops two
from sharing the machine is memory. A step declares the memory it peaks at (its last measured peak when the folder
has one, else its builder's typical figure scaled to the model); a step starts only while the declared memory of
everything running plus its own stays within the budget, or when nothing else runs.

Cores are handed out in slots (`jobs` slots of the cores this process may use); a step started while others run or
wait gets one slot and is pinned to it (isolate.start_isolated), so no two steps ever share a core: two processes
each running LiteRT with a thread per machine core on 2 cores ran int16 scoring 3.7x slower than one thread each. A
step that starts with nothing else running or waiting gets every core. An `exclusive` step (a CPU speed measurement)
waits until nothing runs and runs alone on every core, so its figure is the machine's, not a shared one's.

After a step fails, nothing new starts; the steps still running finish (their work is recorded) and the first error is
raised. Ctrl-C stops every running step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable

from quantlab.lab.isolate import start_isolated
from quantlab.lab.stages import Step


@dataclass(frozen=True)
class Resources:
    """cpus: the cores the lab may use. jobs: steps at most side by side (1: one at a time, every core each).
    budget_mb: the memory the steps' declared peaks may add up to."""

    cpus: tuple[int, ...]
    jobs: int
    budget_mb: float

    @classmethod
    def of(cls, jobs: int | None) -> "Resources":
        """This process's cores, `jobs` steps side by side (None or 1: one at a time, on every core), and 85 % of the
        machine's memory."""
        import os

        import psutil

        cpus = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else (0,)
        return cls(cpus, jobs or 1, psutil.virtual_memory().total / 1e6 * 0.85)

    def slots(self) -> list[frozenset[int]]:
        n = max(1, min(self.jobs, len(self.cpus)))
        return [frozenset(self.cpus[i::n]) for i in range(n)]


def run_steps(steps: list[Step], res: Resources, memory_mb: Callable[[Step], float],
              done: Callable[[Step, Any, float, float], None]) -> None:
    """Run `steps` (all of them; the caller left out what is skipped). `memory_mb(step)`: its declared peak.
    `done(step, result, peak_mb, seconds)` is called in the order steps finish, from this process."""
    names = {s.name for s in steps}
    pending = list(steps)
    free = res.slots()
    running: dict[Any, tuple[Step, Any, list, float, float]] = {}  # conn → step, child, slots, declared MB, start
    finished: set[str] = set()
    error: BaseException | None = None

    def ready(s: Step) -> bool:
        return all(n in finished or n not in names for n in s.needs)

    def start(s: Step, slots: list) -> None:
        cpus = set().union(*slots)
        child = start_isolated(s.run, s.name, None if cpus == set(res.cpus) else cpus)
        for slot in slots:
            free.remove(slot)
        running[child.conn] = (s, child, slots, memory_mb(s), time.perf_counter())
        pending.remove(s)

    def launch() -> None:
        if error is not None:
            return
        candidates = [s for s in pending if ready(s)]
        exclusive = [s for s in candidates if s.exclusive]
        if exclusive:  # it waits for the machine to empty; nothing else starts before it
            if not running:
                start(exclusive[0], list(free))
            return
        for s in candidates:
            if not free:
                return
            in_use = sum(r[3] for r in running.values())
            if running and in_use + memory_mb(s) > res.budget_mb:
                continue  # a smaller step further on may fit
            # Alone: nothing runs and nothing else can start before it ends (the rest wait for it).
            alone = not running and len(candidates) == 1
            start(s, list(free) if alone else [free[0]])

    try:
        launch()
        while running:
            for conn in wait(list(running)):
                s, child, slots, _, t0 = running.pop(conn)
                free.extend(slots)
                try:
                    result, peak = child.finish()
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - raised once the others have finished
                    error = error or exc
                    continue
                finished.add(s.name)
                done(s, result, peak, time.perf_counter() - t0)
            launch()
    except BaseException:
        for _, child, *_ in running.values():
            child.stop()
        raise
    if error is not None:
        raise error
    if pending:
        raise RuntimeError(f"steps {', '.join(s.name for s in pending)} wait for each other")
