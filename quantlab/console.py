"""A console a person can read: quantlab's own lines on the terminal, everything else in the run's log file.

Third-party libraries write to the process's stdout/stderr file descriptors from C++ as well as from Python (absl and
LiteRT INFO lines, oneDNN notices, torch FutureWarnings, torchao "Failed to load ...", ai-edge-quantizer's progress
bars). `quiet()` points both descriptors at a log file for the duration of a command, children included (lab steps
are forked and inherit them), and keeps streams to the real terminal: `out()` for a command's results, `err()` for
quantlab's progress and messages (progress.py writes there). `verbose=True` leaves the descriptors alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TextIO

_terminal: dict[str, TextIO] = {}  # "out"/"err" while quiet() holds the descriptors


def out() -> TextIO:
    """Where a command prints its results: the terminal's stdout, even inside quiet()."""
    return _terminal.get("out", sys.stdout)


def err() -> TextIO:
    """Where quantlab's progress lines, warnings and errors go: the terminal's stderr, even inside quiet()."""
    return _terminal.get("err", sys.stderr)


class _Err:
    """A stream that is always the current `err()` (for logging handlers made before quiet() starts)."""

    def write(self, s: str) -> int:
        return err().write(s)

    def flush(self) -> None:
        err().flush()


def log_to_terminal(level: int = logging.WARNING) -> None:
    """quantlab's own log records ("quantlab: WARNING: ...") go to the terminal; other libraries' records (LiteRT-LM
    warns through the root logger) to the process's stderr: the log file inside quiet(), the terminal with --verbose."""
    ours = logging.getLogger("quantlab")
    if not any(getattr(h, "quantlab_terminal", False) for h in ours.handlers):
        handler = logging.StreamHandler(_Err())
        handler.setFormatter(logging.Formatter("quantlab: %(levelname)s: %(message)s"))
        handler.quantlab_terminal = True
        ours.addHandler(handler)
        ours.propagate = False
    ours.setLevel(level)
    logging.basicConfig(level=level, format="%(name)s: %(levelname)s: %(message)s")


def _to_terminal(stream: TextIO, fd: int) -> tuple[TextIO, bool]:
    """A stream to what `fd` is now (the terminal), and whether we opened it. A stream not backed by `fd` (pytest's
    capsys) already is what the caller sees: keep it."""
    try:
        backed = stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        backed = False
    return (os.fdopen(os.dup(fd), "w", buffering=1), True) if backed else (stream, False)


@contextlib.contextmanager
def quiet(log_path: Path, verbose: bool = False) -> Iterator[Callable[[str], None]]:
    """Yield `say(line)`: the line goes to the terminal and to `log_path`; other output goes to `log_path` only."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
        if verbose:
            def say(line: str) -> None:
                print(line, file=err(), flush=True)
                log.write(line + "\n")
            yield say
            return
        sys.stdout.flush()
        sys.stderr.flush()
        terminal_out, own_out = _to_terminal(sys.stdout, 1)
        terminal_err, own_err = _to_terminal(sys.stderr, 2)
        saved, before = (os.dup(1), os.dup(2)), dict(_terminal)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        _terminal.update(out=terminal_out, err=terminal_err)

        def say(line: str) -> None:
            terminal_err.write(line + "\n")
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
            _terminal.clear()
            _terminal.update(before)
            for stream, own in ((terminal_out, own_out), (terminal_err, own_err)):
                stream.flush()
                if own:
                    stream.close()


@contextlib.contextmanager
def command_log(folder: Path, verbose: bool = False) -> Iterator[None]:
    """quiet() for one standalone command working on `folder`: the libraries' output is appended to
    folder/quantlab.log. A folder that does not exist yet (export creates it) gets the log if it exists at the end;
    nothing is left behind where it does not (bad input writes no file)."""
    folder = Path(folder)
    if folder.is_dir():
        with quiet(folder / "quantlab.log", verbose):
            yield
        return
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="quantlab-", suffix=".log")
    os.close(fd)
    try:
        with quiet(Path(tmp), verbose):
            yield
    finally:
        if folder.is_dir():
            with open(folder / "quantlab.log", "a") as dst:
                dst.write(Path(tmp).read_text(errors="replace"))
        os.unlink(tmp)
