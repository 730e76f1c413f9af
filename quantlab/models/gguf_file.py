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


def load_gguf(path: Path, spec: str, name: str | None = None, tokenizer=None, config=None) -> LoadedModel:
    """Load `path`, checking first that it holds a Gemma3 model. tokenizer, config: the file's, when already at hand
    (the bundled model's, read once and cached: each read parses the whole GGUF's metadata, its 262,144-token
    vocabulary included, ~15 s on the 270M); else read from the file. A config given is taken as checked."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    folder, fname = str(path.parent), path.name
    if config is None:
        check_gguf(path)
        try:
            config = AutoConfig.from_pretrained(folder, gguf_file=fname)
        except Exception as exc:  # transformers raises many types for unreadable files
            raise UserError(f"{path}: cannot read its config ({exc}); pass a valid Gemma3 .gguf") from None
        check_gemma3_text_config(config, str(path))
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    # (the config passed on: from_pretrained would otherwise parse the file once more to read it)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, config=config, dtype=torch.float32)
    model.eval()
    return LoadedModel(
        name=name or path.stem,
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        source=f"GGUF file {path.name} (dequantized to float32)",
        random_weights=False,
    )
