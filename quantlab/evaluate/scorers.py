"""Scorers yield next-token logits for a token window, chunk by chunk, so that metrics stream.

`LiteRTScorer` runs an artifact through the host runtime (decode at every position); `StoredScorer` keeps what it
yields on disk for the next comparison with the same main (stored_logits.py). `TorchScorer` is the PyTorch
(transformers) reference of the same weights: one forward for the window's hidden states, then the LM head chunk by
chunk (the 262k-wide logits of a whole window would take 1.3 GB).
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from quantlab.runtime.int_head import HostHead
from quantlab.runtime.session import ArtifactSet


class Scorer(Protocol):
    name: str

    def chunks(self, window: list[int]) -> Iterator[np.ndarray]: ...


class LiteRTScorer:
    """`head`: with `arts.main` a scoring copy without its LM head, the head applied on the host
    (runtime/scoring_main.py)."""

    def __init__(self, arts: ArtifactSet, head: HostHead | None = None) -> None:
        self.arts, self.head = arts, head
        self.name = arts.variant

    def chunks(self, window: list[int]) -> Iterator[np.ndarray]:
        # Through decode, one token per call: only decode returns logits (as on the phone, where decode is what
        # picks every generated token). Chunks of the prefill length keep the chunking of TorchScorer.
        yield from self.arts.session().decode_chunks(window, self.arts.host.prefill_len, self.head)


class StoredScorer:
    """An artifact's logits from its folder's store (stored_logits.py) when there, otherwise computed by the runtime
    and stored on the way. `reuse=False` always computes (a variant's own scoring, whose speed is measured) and only
    stores. Choose it for a reference that several variants are compared with."""

    def __init__(self, arts: ArtifactSet, reuse: bool = True) -> None:
        from quantlab.evaluate.stored_logits import StoredLogits

        self.inner: LiteRTScorer | None = LiteRTScorer(arts)
        self.store, self.reuse, self.rows, self.name = StoredLogits(arts), reuse, arts.host.prefill_len, arts.variant

    def chunks(self, window: list[int]) -> Iterator[np.ndarray]:
        if self.reuse and self.store.has(window):
            yield from self.store.read(window, self.rows)
            return
        if self.store.has(window):
            yield from self.inner.chunks(window)
            return
        with self.store.writer(window) as put:
            for chunk in self.inner.chunks(window):
                put(chunk)
                yield chunk

    def detach(self, wins: list[list[int]]) -> "StoredScorer":
        """Store every window not stored yet, then let go of the runtime (as CachedScorer.detach, but on disk: the
        logits are read back memory-mapped instead of held, 1 MB per token)."""
        for w in wins:
            if not self.store.has(w):
                for _ in self.chunks(w):
                    pass
        self.inner = None
        return self


class CachedScorer:
    """A scorer's chunks, computed on first use and replayed after (the FP32 reference of every candidate)."""

    def __init__(self, inner: Scorer) -> None:
        self.inner, self.name, self._cache = inner, inner.name, {}

    def chunks(self, window: list[int]) -> Iterator[np.ndarray]:
        key = tuple(window)
        if key not in self._cache:
            self._cache[key] = list(self.inner.chunks(window))
        yield from self._cache[key]

    def detach(self, wins: list[list[int]]) -> "CachedScorer":
        """Compute every window now and let go of the inner scorer (and its models): the 1B's FP32 reference (13 GB)
        need not stay loaded beside the variant it is compared with. Costs 1 MB per token for Gemma3's 262k vocab."""
        for w in wins:
            for _ in self.chunks(w):  # fills the cache
                pass
        self.inner = None
        return self


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
