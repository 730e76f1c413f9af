"""Choosing the next token from logits: greedy, temperature, top-k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplerConfig:
    """temperature 0 is greedy (reproducible; use it to compare variants). For varied text try 0.7–1.0 with top_k 64.

    top_k 0 means no top-k cut.
    """

    temperature: float = 0.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}; use 0 for greedy")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}; use 0 to disable it")


class Sampler:
    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)

    def __call__(self, logits: np.ndarray) -> int:
        cfg = self.config
        if cfg.temperature == 0:
            return int(np.argmax(logits))
        x = logits.astype(np.float64) / cfg.temperature
        if cfg.top_k and cfg.top_k < x.size:
            cut = np.partition(x, -cfg.top_k)[-cfg.top_k]
            x = np.where(x >= cut, x, -np.inf)
        p = np.exp(x - x.max())
        p /= p.sum()
        return int(self.rng.choice(x.size, p=p))
