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

Among the steps ready to start, the one heading the longest chain of work starts first (its expected seconds plus the
longest chain of steps that need it, `seconds` giving each step's): in list order the 1B shape's evaluate stage
started its longest step, LiteRT-LM's int16_w4 scoring (~600 s), last but one (replayed from a run's step times:
1,516 s in list order, 1,483 s longest chain first; docs/results/2026-12-07.md §8).

After a step fails, nothing new starts; the steps still running finish (their work is recorded) and the first error is
raised. Ctrl-C stops every running step. The same loop (`run_steps`) drives the steps as Ray tasks
(ray_steps.RayRunner): only where a step starts and how its end is awaited differ (`Backend`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Protocol

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
        """This process's cores, `jobs` steps side by side (None: one per core; 1: one at a time, on every core), and
        85 % of the machine's memory."""
        import os

        import psutil

        cpus = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else (0,)
        return cls(cpus, jobs or len(cpus), psutil.virtual_memory().total / 1e6 * 0.85)

    def slots(self) -> list[frozenset[int]]:
        n = max(1, min(self.jobs, len(self.cpus)))
        return [frozenset(self.cpus[i::n]) for i in range(n)]


class Backend(Protocol):
    """Where steps run: `Forked` (children of this process, on this machine's cores) or ray_steps.RayRunner's tasks."""

    def start(self, step: Step, alone: bool) -> Any | None:
        """Start `step` and return its handle, or None when it cannot start now (no core, or memory, free).
        alone: nothing else runs and nothing else can start before it ends; an exclusive step always starts alone."""

    def wait(self, handles: list, timeout: float | None = None) -> list:
        """Those of `handles` whose steps have ended: at least one, or none once `timeout` seconds have passed."""

    def finish(self, handle: Any) -> tuple[Any, float, dict | None]:
        """An ended step's result, peak RSS (MB) and where it ran (None or no "node": this machine; a back-end that
        holds steps in a queue also gives their own run time there, as "seconds"), with the CPU seconds it used as
        "cpu_s" where known; raises the step's error."""

    def stop(self, handles: list) -> None:
        """Stop the running steps (Ctrl-C, or an error of this loop)."""


class Forked:
    """Each step a forked child (isolate.start_isolated) pinned to one slot of cores, or to every core when alone;
    a step starts only while the declared memory of everything running plus its own stays within the budget, or
    when nothing else runs. `memory_mb(step)`: its declared peak."""

    def __init__(self, res: Resources, memory_mb: Callable[[Step], float]) -> None:
        self.res, self.memory_mb = res, memory_mb
        self.free = res.slots()
        self.running: dict[Any, tuple[Any, list, float]] = {}  # conn → child, slots, declared MB

    def start(self, step: Step, alone: bool) -> Any | None:
        if not self.free:
            return None
        mb = self.memory_mb(step)
        if self.running and sum(r[2] for r in self.running.values()) + mb > self.res.budget_mb:
            return None  # a smaller step further on may fit
        slots = list(self.free) if alone or step.exclusive else [self.free[0]]
        cpus = set().union(*slots)
        child = start_isolated(step.run, step.name, None if cpus == set(self.res.cpus) else cpus)
        for slot in slots:
            self.free.remove(slot)
        self.running[child.conn] = (child, slots, mb)
        return child.conn

    def wait(self, handles: list, timeout: float | None = None) -> list:
        return wait(handles, timeout)

    def finish(self, handle: Any) -> tuple[Any, float, dict | None]:
        child, slots, _ = self.running.pop(handle)
        self.free.extend(slots)
        result, peak = child.finish()
        return result, peak, {"cpu_s": child.cpu_s}

    def stop(self, handles: list) -> None:
        for h in handles:
            self.running[h][0].stop()


def chain_seconds(steps: list[Step], seconds: Callable[[Step], float]) -> dict[str, float]:
    """Each step's expected seconds plus the longest chain of the steps of `steps` that need it, directly or not."""
    after: dict[str, list[Step]] = {s.name: [] for s in steps}
    for s in steps:
        for n in s.needs:
            if n in after:
                after[n].append(s)
    chain: dict[str, float] = {}

    def of(s: Step) -> float:
        if s.name not in chain:
            chain[s.name] = own = seconds(s)  # (a cycle ends here; run_steps reports it)
            chain[s.name] = own + max((of(t) for t in after[s.name]), default=0.0)
        return chain[s.name]

    for s in steps:
        of(s)
    return chain


def run_steps(steps: list[Step], backend: Backend,
              done: Callable[[Step, Any, float, float, dict | None], None],
              tick: Callable[[list[tuple[Step, float]]], None] | None = None, tick_s: float = 30.0,
              seconds: Callable[[Step], float] | None = None) -> None:
    """Run `steps` (all of them; the caller left out what is skipped) on `backend`. A step starts once the steps of
    this list it `needs` have finished; an exclusive step waits until nothing runs and nothing starts beside it.
    Of the steps ready, those heading the longest chains (chain_seconds, by `seconds`) start first; without
    `seconds`, in list order.
    `done(step, result, peak_mb, seconds, where)` is called in the order steps finish, from this process;
    `tick(running)` every `tick_s` seconds in which none ended, with each running step and when it started
    (time.perf_counter()), from this process too (the lab prints where a long step is)."""
    names = {s.name for s in steps}
    if seconds is not None:
        chain = chain_seconds(steps, seconds)
        steps = sorted(steps, key=lambda s: -chain[s.name])  # (stable: list order among equals)
    pending = list(steps)
    running: dict[Any, tuple[Step, float]] = {}  # handle → step, start
    finished: set[str] = set()
    error: BaseException | None = None

    def start(s: Step, alone: bool) -> None:
        handle = backend.start(s, alone)
        if handle is not None:
            running[handle] = (s, time.perf_counter())
            pending.remove(s)

    def launch() -> None:
        if error is not None:
            return
        ready = [s for s in pending if all(n in finished or n not in names for n in s.needs)]
        exclusive = [s for s in ready if s.exclusive]
        if exclusive:  # it waits for the machine to empty; nothing else starts before it
            if not running:
                start(exclusive[0], True)
            return
        for s in ready:
            start(s, alone=not running and len(ready) == 1)

    try:
        launch()
        while running:
            ended = backend.wait(list(running), tick_s if tick else None)
            if not ended and tick:
                tick(list(running.values()))
            for handle in ended:
                s, t0 = running.pop(handle)
                try:
                    result, peak, where = backend.finish(handle)
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - raised once the others have finished
                    error = error or exc
                    continue
                finished.add(s.name)
                ran = (where or {}).pop("seconds", None)  # a back-end that queues steps times them where they ran
                done(s, result, peak, time.perf_counter() - t0 if ran is None else ran, where)
            launch()
    except BaseException:
        backend.stop(list(running))
        raise
    if error is not None:
        raise error
    if pending:
        raise RuntimeError(f"steps {', '.join(s.name for s in pending)} wait for each other")
