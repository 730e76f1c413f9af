"""Resolve `--model`: a named model, a Hugging Face folder, or a .gguf file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from quantlab.errors import UserError
from quantlab.models.bundled import NAME as BUNDLED, load_bundled
from quantlab.models.gguf_file import check_gguf, load_gguf
from quantlab.models.hf_dir import load_hf_dir, read_hf_config
from quantlab.models.loaded import LoadedModel
from quantlab.models.random_weights import SHAPES, load_random

_NAMED: dict[str, Callable[[str], LoadedModel]] = {BUNDLED: load_bundled}
_NAMED.update({name: load_random for name in SHAPES})


def available_names() -> list[str]:
    return sorted(_NAMED)


def load_model(spec: str) -> LoadedModel:
    """Load what `spec` names. Choose a named model for the bundled 270M or random configs, a path otherwise."""
    if spec in _NAMED:
        return _NAMED[spec](spec)
    path = Path(spec)
    if path.is_dir():
        return load_hf_dir(path, spec)
    if path.suffix == ".gguf":
        return load_gguf(path, spec)
    if path.exists():
        raise UserError(f"{spec} is neither a Hugging Face folder nor a .gguf file; {_accepted()}")
    raise UserError(f"model {spec!r} not found; {_accepted()}")


def check_spec(spec: str) -> None:
    """What `load_model(spec)` would refuse, found cheaply (a folder's config.json, a GGUF's header; no weights)."""
    if spec in _NAMED:
        return
    path = Path(spec)
    if path.is_dir():
        read_hf_config(path)
    elif path.suffix == ".gguf" and path.is_file():
        check_gguf(path)
    elif path.exists():
        raise UserError(f"{spec} is neither a Hugging Face folder nor a .gguf file; {_accepted()}")
    else:
        raise UserError(f"model {spec!r} not found; {_accepted()}")


def _accepted() -> str:
    return f"--model takes one of {', '.join(available_names())}, a Hugging Face Gemma3 folder, or a .gguf file"
