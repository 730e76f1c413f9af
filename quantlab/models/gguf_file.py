"""Load a Gemma3 text model from a GGUF file (dequantized to float32 by transformers)."""

from __future__ import annotations

from pathlib import Path

import torch

from quantlab.errors import UserError
from quantlab.models.loaded import LoadedModel
from quantlab.models.validate import ACCEPTED, check_gemma3_text_config


def gguf_architecture(path: Path) -> str:
    """Read `general.architecture` from a GGUF header; a corrupt file is a UserError."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable GGUF file ({type(exc).__name__}); pass a valid .gguf") from None


def check_gguf(path: Path) -> None:
    """UserError unless `path` is a readable GGUF file of a Gemma3 model (reads the header only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; pass a .gguf file, a Hugging Face folder, or a named model")
    arch = gguf_architecture(path)
    if arch != "gemma3":
        raise UserError(f"{path} holds a {arch!r} model; quantlab accepts {ACCEPTED}")


def load_gguf(path: Path, spec: str, name: str | None = None) -> LoadedModel:
    """Load `path`, checking first that it holds a Gemma3 model."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    check_gguf(path)
    folder, fname = str(path.parent), path.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    except Exception as exc:  # transformers raises many types for unreadable files
        raise UserError(f"{path}: cannot read its config ({exc}); pass a valid Gemma3 .gguf") from None
    check_gemma3_text_config(config, str(path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    model.eval()
    return LoadedModel(
        name=name or path.stem,
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        source=f"GGUF file {path.name} (dequantized to float32)",
        random_weights=False,
    )
