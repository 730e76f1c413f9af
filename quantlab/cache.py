"""quantlab's cache folder (assembled GGUF tokenizer, built helper libraries). Set QUANTLAB_CACHE to move it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the cache; defaults to ~/.cache/quantlab."""
    root = Path(os.environ.get("QUANTLAB_CACHE", Path.home() / ".cache" / "quantlab"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
