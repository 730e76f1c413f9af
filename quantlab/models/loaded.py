"""What every model source returns: a PyTorch Gemma3 text model, its tokenizer, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LoadedModel:
    """A loaded Gemma3 text model.

    `random_weights` is True for the random configs; every report must say "random weights" for such a model.
    `spec` is what the user passed to `--model`, kept so an artifact folder can reload its own reference.
    """

    name: str
    spec: str
    model: Any  # transformers Gemma3ForCausalLM, float32, eval mode
    tokenizer: Any  # transformers tokenizer with BOS prepended on encode
    source: str
    random_weights: bool

    @property
    def config(self) -> Any:
        return self.model.config

    def describe(self) -> str:
        """One line for reports."""
        tag = " (random weights)" if self.random_weights else ""
        cfg = self.config
        return (
            f"{self.name}{tag}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
            f"vocab {cfg.vocab_size}, from {self.source}"
        )
