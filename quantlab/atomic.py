"""Write files so that an interruption never leaves a half-written artifact behind.

Every artifact is written to a temporary name in the same folder, then renamed over the final name (`os.replace` is
atomic on one filesystem). If anything goes wrong, including Ctrl-C, the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from quantlab.errors import UserError


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing artifact unless the user asked for it."""
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it, or choose another --out")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: tools (LiteRT's plugin among them) decide what a file is by its extension.
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
