"""A console a person can read: quantlab's own lines on the terminal, everything else in the run's log file.

Third-party libraries write to the process's stdout/stderr file descriptors from C++ as well as from Python (absl and
LiteRT INFO lines, oneDNN notices, torch FutureWarnings, torchao "Failed to load ...", ai-edge-quantizer's progress
bars). `quiet()` points both descriptors at a log file for the duration of a command, children included (lab steps
are forked and inherit them), and hands back a stream to the real terminal for quantlab's own lines, which go to the
log as well. `verbose=True` leaves the descriptors alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def quiet(log_path: Path, verbose: bool = False) -> Iterator[Callable[[str], None]]:
    """Yield `say(line)`: the line goes to the terminal and to `log_path`; other output goes to `log_path` only."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
        if verbose:
            def say(line: str) -> None:
                print(line, file=sys.stderr, flush=True)
                log.write(line + "\n")
            yield say
            return
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)

        def say(line: str) -> None:
            terminal.write(line + "\n")
            log.write(line + "\n")

        try:
            yield say
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()
