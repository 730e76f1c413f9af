"""Scorers yield next-token logits for a token window, chunk by chunk, so that metrics stream.

`LiteRTScorer` runs an artifact through the host runtime. `TorchScorer` is the PyTorch (transformers) reference of the
same weights: one forward for the window's hidden states, then the LM head chunk by chunk (the 262k-wide logits of a
whole window would take 1.3 GB).
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from quantlab.runtime.session import ArtifactSet


class Scorer(Protocol):
    name: str

    def chunks(self, window: list[int]) -> Iterator[np.ndarray]: ...


class LiteRTScorer:
    def __init__(self, arts: ArtifactSet) -> None:
        self.arts = arts
        self.name = arts.variant

    def chunks(self, window: list[int]) -> Iterator[np.ndarray]:
        yield from self.arts.session().prefill_chunks(window, all_logits=True)


class TorchScorer:
    def __init__(self, hf_model, chunk: int) -> None:
        self.model, self.chunk = hf_model, chunk
        self.name = "torch"

    def chunks(self, window: list[int]) -> Iterator[np.ndarray]:
        import torch

        with torch.no_grad():
            hidden = self.model.model(torch.tensor([window])).last_hidden_state[0]
            softcap = self.model.config.final_logit_softcapping
            for s in range(0, len(window), self.chunk):
                logits = self.model.lm_head(hidden[s : s + self.chunk])
                if softcap is not None:
                    logits = torch.tanh(logits / softcap) * softcap
                yield logits.float().numpy()
