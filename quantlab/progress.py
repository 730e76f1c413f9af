"""Progress for long work: a stage line with elapsed time, and tqdm bars for steps (with ETA).

A lab step runs quiet in a process of its own, so its bars are off; with `report_to(path)` set in that process, every
bar also writes where it is (what, done, of how many, since when) to that small file, which the lab reads while it
waits and turns into a line on the console (lab/pipeline.py): a 40-minute search no longer looks like a hang.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

from quantlab.console import err

T = TypeVar("T")
_SINK: dict[str, Path] = {}  # "path": where this process's bars report (a lab step's progress file)


class Stage:
    """Context manager: prints `[stage] ...` on entry and the duration on exit, and records it in `timings`."""

    def __init__(self, name: str, timings: dict[str, float] | None = None, quiet: bool = False) -> None:
        self.name, self.timings, self.quiet = name, timings, quiet
        self.seconds = 0.0

    def __enter__(self) -> "Stage":
        self._t0 = time.perf_counter()
        if not self.quiet:
            print(f"[{self.name}] ...", file=err(), flush=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.seconds = time.perf_counter() - self._t0
        if exc_type is None:
            if self.timings is not None:
                self.timings[self.name] = round(self.seconds, 2)
            if not self.quiet:
                print(f"[{self.name}] done in {self.seconds:.1f} s", file=err(), flush=True)


def steps(items: Iterable[T], desc: str, total: int | None = None, quiet: bool = False) -> Iterator[T]:
    """Iterate with a tqdm bar (step count and ETA) on the terminal's stderr."""
    return iter(bar(total, desc, quiet, items))


def bar(total: int | None, desc: str, quiet: bool = False, items: Iterable | None = None) -> tqdm:
    """A tqdm bar on the terminal's stderr; without `items`, one to `update()` by hand (a context manager), for
    loops that may end before `total`. In a lab step (`report_to`), it also reports to the step's progress file."""
    if "path" in _SINK:
        return _Reported(items, desc=desc, total=total, disable=quiet, file=err(), leave=False, dynamic_ncols=True)
    return tqdm(items, desc=desc, total=total, disable=quiet, file=err(), leave=False, dynamic_ncols=True)


def report_to(path: Path | None) -> None:
    """Make this process's bars report to `path` (None: stop). Called in a lab step's own process."""
    _SINK.pop("path", None)
    if path is not None:
        _SINK["path"] = Path(path)


@dataclass(frozen=True)
class Progress:
    """Where a step is: `done` of `total` items of `desc`, the first of them begun at `since` (epoch seconds)."""

    desc: str
    done: int
    total: int | None
    since: float

    def left(self, now: float) -> float | None:
        """Seconds the rest of these items should take at the pace so far (None before the first is done)."""
        if not self.done or not self.total:
            return None
        return (now - self.since) / self.done * max(0, self.total - self.done)

    @classmethod
    def read(cls, path: Path) -> "Progress | None":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError):  # not written yet, or mid-replace on a shared file system
            return None


class _Reported(tqdm):
    """A tqdm bar that also writes its count to the progress file, whether it is shown or not."""

    def __init__(self, items: Iterable | None, desc: str, **kwargs) -> None:
        super().__init__(items, desc=desc, **kwargs)  # a disabled tqdm keeps neither desc nor a count
        self._desc, self._count, self._since, self._iterating = desc, 0, time.time(), False
        self._write()

    def __iter__(self):
        self._iterating = True  # a shown bar's own iteration calls update(): counted here, not there
        try:
            for item in super().__iter__():
                yield item
                self._count += 1
                self._write()
        finally:
            self._iterating = False

    def update(self, n: float | None = 1) -> bool | None:
        if not self._iterating:
            self._count += int(n or 0)
            self._write()
        return super().update(n)

    def _write(self) -> None:
        path = _SINK.get("path")
        if path is None:
            return
        doc = {"desc": self._desc, "done": self._count, "total": self.total, "since": self._since}
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError:  # progress is a courtesy: never fail a step over it
            pass


@dataclass(frozen=True)
class Reporting:
    """A lab step's `run` whose bars report to `path` (a callable the lab's back-ends run, pickled for Ray)."""

    run: object
    path: Path

    def __call__(self):
        report_to(self.path)
        try:
            return self.run()
        finally:
            report_to(None)
