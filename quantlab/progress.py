"""Progress for long work: a stage line with elapsed time, and tqdm bars for steps (with ETA)."""

from __future__ import annotations

import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

from quantlab.console import err

T = TypeVar("T")


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
    loops that may end before `total`."""
    return tqdm(items, desc=desc, total=total, disable=quiet, file=err(), leave=False, dynamic_ncols=True)
