"""While a lab step runs long, a line now and then saying where it is, so a long step does not look like a hang.

A step runs quiet in a process of its own (isolate.py, or a Ray task); its progress bars write where they are to a
small file in the run folder (progress.Reporting), which this reads while the lab waits (scheduler.run_steps' tick).
The 1B shape's analyze step runs 40 minutes: its sensitivity rows and search candidates now show as they go.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from quantlab.lab.eta import clock
from quantlab.lab.stages import Step
from quantlab.progress import Progress, Reporting

EVERY_S = 300.0  # a step's first line after this long, then one this often (the 270M's default run: a handful)


class Heartbeat:
    """The progress files of one run folder's steps, and the lines made from them (`log`)."""

    def __init__(self, folder: Path, log: Callable[[str], None], every_s: float = EVERY_S) -> None:
        self.dir, self.log, self.every_s = Path(folder) / ".progress", log, every_s
        self.last: dict[str, float] = {}  # step → when its last line was printed (perf_counter)

    def wrap(self, step: Step) -> Step:
        """`step`, its bars reporting to its progress file (an old run's file removed first)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path(step.name).unlink(missing_ok=True)
        return replace(step, run=Reporting(step.run, self.path(step.name)))

    def path(self, step: str) -> Path:
        return self.dir / f"{step.replace('/', '_')}.json"

    def progress(self, step: str) -> Progress | None:
        return Progress.read(self.path(step))

    def ended(self, step: str) -> None:
        self.path(step).unlink(missing_ok=True)
        self.last.pop(step, None)

    def tidy(self) -> None:
        """Remove the folder of progress files once no step has one (a stage's end)."""
        try:
            self.dir.rmdir()
        except OSError:
            pass

    def tick(self, running: list[tuple[Step, float]], eta: Callable[[], str]) -> None:
        """A line for each running step that has run `every_s` since it started or since its last line: how long
        it has run and, if it reports, what it is doing, how far through and about how long that part has left;
        `eta()` ends the line (the whole run's elapsed time and ETA)."""
        now = time.perf_counter()
        for step, t0 in running:
            if now - self.last.get(step.name, t0) < self.every_s:
                continue
            self.last[step.name] = now
            line = f"  {step.name:44s} running {clock(now - t0)}"
            p = self.progress(step.name)
            if p is not None:
                line += f" · {p.desc} {p.done}/{p.total if p.total else '?'}"
                left = p.left(time.time())
                if left is not None:
                    line += f" (~{clock(left)} left)"
            self.log(f"{line} · {eta()}")
