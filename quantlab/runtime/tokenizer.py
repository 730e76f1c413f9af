"""The artifact folder's tokenizer, read with the `tokenizers` library (Rust) alone.

The export saves the model's tokenizer with transformers (`tokenizer/tokenizer.json` and its config); every later step
only encodes and decodes, and `tokenizers` does both with the same ids and text as transformers' fast tokenizer
(tests/test_tokenizer.py), in about 1 s instead of ~8 s (transformers imports torch, then parses the 33 MB
tokenizer.json in Python). That start-up was paid by every step process of a lab: scoring, speed runs, bundles.
"""

from __future__ import annotations

import json
from pathlib import Path


class Tokenizer:
    """encode/decode of `folder/tokenizer.json`; `chat_template`: the Jinja template transformers saved beside it
    (`chat_template.jinja`, or the config's `chat_template` string), else None."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer as Fast

        folder = Path(folder)
        self._fast = Fast.from_file(str(folder / "tokenizer.json"))
        self.chat_template = _chat_template(folder)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, no special token added (the caller puts BOS first)."""
        return self._fast.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self._fast.decode(list(ids), skip_special_tokens=skip_special_tokens)


def _chat_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = folder / "tokenizer_config.json"
    template = json.loads(config.read_text()).get("chat_template") if config.is_file() else None
    return template if isinstance(template, str) and template else None
