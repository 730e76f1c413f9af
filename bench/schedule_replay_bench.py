"""A finished run's stages replayed through the lab's scheduler on a simulated clock: list order against the longest
chain first, each step taking the seconds it took in that run.

    .venv/bin/python bench/schedule_replay_bench.py DIR [--model gemma3-1b-random] [--no-per-op] [--stages compile evaluate]
        [--together compile bundle evaluate]

DIR is a finished `quantlab run` folder (its options given again, as to `quantlab run`, so that the lab builds the
same steps). Each stage's steps are rebuilt by the lab's own builders (Lab.plan) with the memory they declare on a
fresh run (nothing recorded), and run by scheduler.run_steps on a back-end that only advances a clock: two slots of
one core, an exclusive step on both, the declared memory within 85 % of this machine's. Orders compared:
  list   — the builders' order (the scheduler before chain-first ordering)
  fresh  — the longest chain first by the typical figures a fresh run has (Step.typical_s, eta.TYPICAL_S)
  known  — the longest chain first by the recorded seconds (a second run of the same folder)
With --together, the steps of those stages are also replayed as one pass (each step starting once the steps it needs
have ended, whatever their stage), against the same stages one after another: what a lab without the barriers
between those stages would save.
A replay, not a measurement: a step's time beside another step is taken to be what it was in the recorded run.
"""

from __future__ import annotations

import argparse
import heapq
import sys
from pathlib import Path


class Clock:
    """scheduler.Backend on a simulated clock: steps end after their recorded seconds."""

    def __init__(self, seconds: dict[str, float], memory_mb, budget_mb: float, slots: int = 2) -> None:
        self.seconds, self.memory_mb, self.budget_mb = seconds, memory_mb, budget_mb
        self.free, self.now, self.ends = slots, 0.0, []
        self.running: dict[int, tuple[str, int, float]] = {}  # handle → step, slots, MB
        self.n, self.started = 0, []

    def start(self, step, alone: bool):
        if not self.free:
            return None
        mb = self.memory_mb(step)
        if self.running and sum(r[2] for r in self.running.values()) + mb > self.budget_mb:
            return None
        take = self.free if alone or step.exclusive else 1
        self.free -= take
        self.n += 1
        self.running[self.n] = (step.name, take, mb)
        self.started.append(step.name)
        heapq.heappush(self.ends, (self.now + self.seconds[step.name], self.n))
        return self.n

    def wait(self, handles, timeout=None):
        end, h = heapq.heappop(self.ends)
        self.now = end
        return [h]

    def finish(self, handle):
        name, take, _ = self.running.pop(handle)
        self.free += take
        return None, 0.0, {"seconds": self.seconds[name]}

    def stop(self, handles) -> None:
        pass


def main() -> int:
    from quantlab.lab.config import RunConfig
    from quantlab.lab.pipeline import Lab
    from quantlab.lab.scheduler import Resources, run_steps
    from quantlab.lab.state import RunState

    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--no-per-op", action="store_true")
    ap.add_argument("--stages", nargs="+", default=["compile", "evaluate"])
    ap.add_argument("--together", nargs="+", default=[])
    a = ap.parse_args()
    lab = Lab(RunConfig(model=a.model, out=a.folder, per_op=not a.no_per_op), log=lambda _: None)
    plan = lab.plan()
    state = RunState(a.folder)
    recorded = {name: rec["seconds"] for name, rec in state.steps.items()}
    fresh = Lab(RunConfig(model=a.model, out=a.folder, per_op=not a.no_per_op), log=lambda _: None)
    fresh.state = RunState(a.folder)
    fresh.state.steps = {k: v for k, v in state.steps.items() if k == "export"}  # the model's size; nothing else
    budget = Resources.of(None).budget_mb
    print(f"{a.folder} ({a.model}); memory budget {budget / 1e3:.1f} GB, two slots; seconds as recorded")
    print(f"{'stage':9s} {'steps':>5s} {'added up':>9s} {'list':>8s} {'fresh':>8s} {'known':>8s}  first two started "
          f"(fresh)")
    apart = {order: 0.0 for order in ("list", "fresh", "known")}
    rows = [(stage, [stage]) for stage in dict.fromkeys([*a.stages, *a.together])]
    if a.together:
        rows.append(("+".join(a.together), a.together))
    for stage, members in rows:
        steps = [lab.built[n] for m in members for n in plan.steps[m]]
        missing = [s.name for s in steps if s.name not in recorded]
        if missing:
            print(f"{stage}: no recorded time for {', '.join(missing)}")
            return 1
        walls, firsts = {}, {}
        for order, seconds in (("list", None), ("fresh", fresh._seconds), ("known", lambda s: recorded[s.name])):
            clock = Clock(recorded, fresh._memory_mb, budget)
            run_steps(steps, clock, lambda s, *_: None, seconds=seconds)
            walls[order] = clock.now
            firsts[order] = [n for n in clock.started if not lab.built[n].exclusive][:2]
        print(f"{stage:9s} {len(steps):5d} {sum(recorded[s.name] for s in steps):9.1f} {walls['list']:8.1f} "
              f"{walls['fresh']:8.1f} {walls['known']:8.1f}  {', '.join(firsts['fresh'])} (list: "
              f"{', '.join(firsts['list'])})")
        if len(members) == 1 and stage in a.together:
            for order in apart:
                apart[order] += walls[order]
    if a.together:
        print(f"{'one by one':9s} {'':5s} {'':9s} " + " ".join(f"{apart[o]:8.1f}" for o in ("list", "fresh", "known"))
              + f"  (the stages {', '.join(a.together)} one after another)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
