"""The command line of the benches that measure one variant of an artifact folder: DIR [--variant V] [--tokens N]."""

from __future__ import annotations

import argparse
from pathlib import Path


def folder_variant_args(doc: str, tokens: bool = True, **extra: str) -> argparse.Namespace:
    """Parse DIR, --variant (default int16_w8), --tokens when `tokens`, and each `--name` in `extra` with its default."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--variant", default="int16_w8")
    if tokens:
        ap.add_argument("--tokens", type=int, default=None, help="text tokens scored (default: the cache length - 1)")
    for name, default in extra.items():
        ap.add_argument(f"--{name}", default=default)
    return ap.parse_args()
