"""Load a Gemma3 text model from a local Hugging Face checkpoint folder (config.json + safetensors + tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from quantlab.errors import UserError
from quantlab.models.loaded import LoadedModel
from quantlab.models.validate import check_gemma3_text_config


def read_hf_config(path: Path) -> dict:
    """The folder's config.json, checked to be a Gemma3 text model (UserError otherwise); reads no weights."""
    cfg_path = Path(path) / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{path} has no config.json; pass a Hugging Face Gemma3 folder, a .gguf file, or a named model")
    try:
        raw = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{cfg_path} is not valid JSON ({exc.__class__.__name__}); restore the checkpoint") from None
    check_gemma3_text_config(SimpleNamespace(**raw), str(path))
    return raw


def load_hf_dir(path: Path, spec: str) -> LoadedModel:
    """Load the folder at `path`; the config is checked before any weight is read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    read_hf_config(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot load the checkpoint ({first}); it needs weights and a tokenizer") from None
    model.eval()
    return LoadedModel(
        name=Path(path).name,
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        source=f"Hugging Face folder {Path(path).name}",
        random_weights=False,
    )
