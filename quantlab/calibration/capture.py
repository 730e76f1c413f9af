"""Realistic inputs for main's signatures, captured by running calibration text through the FP32 host pipeline.

The texts are joined into one token stream and cut into windows that start with BOS. Each window is prefilled chunk by
chunk; every chunk's inputs (real embeddings, masks and RoPE at real positions, caches holding the real keys and values
of the tokens before it) are one `prefill_<T>` sample, and the next token's inputs at the chunk boundary are one
`decode` sample. Joining the texts first means a short prompt never yields a sample whose caches are all zero.
Windows as long as the cache cover every position main can see, so no cache, mask or RoPE range is fitted to early
positions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from quantlab import layout
from quantlab.runtime.session import ArtifactSet


@dataclass(frozen=True)
class CapturePlan:
    """windows: how many text windows; window_len: tokens per window (None: the cache length).

    Each window gives ceil(window_len / prefill_len) prefill samples and about as many decode samples. More windows
    give ranges closer to what unseen text produces (the tails matter for min-max); 2 windows of the cache length
    (20 + 18 samples on the 270M) take about as long as a minute or two of CPU.
    """

    windows: int = 2
    window_len: int | None = None

    def __post_init__(self) -> None:
        if self.windows < 1:
            raise ValueError(f"samples (windows) must be at least 1, got {self.windows}")
        if self.window_len is not None and self.window_len < 2:
            raise ValueError(f"window_len must be at least 2, got {self.window_len}")


def token_windows(arts: ArtifactSet, texts: list[str], plan: CapturePlan) -> list[list[int]]:
    """Cut the joined texts into `plan.windows` windows (BOS first); fewer if the text runs out."""
    length = min(plan.window_len or arts.host.cache_len, arts.host.cache_len)
    stream: list[int] = []
    need = plan.windows * (length - 1)
    for t in texts:
        stream.extend(arts.encode(t)[1:])
        if len(stream) >= need:
            break
    bos = arts.model_info["bos_token_id"]
    return [[bos, *stream[s : s + length - 1]] for s in range(0, min(len(stream), need), length - 1)]


def capture_window(arts: ArtifactSet, window: list[int]) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield (signature, inputs) pairs for one window, in the order the runtime would run them."""
    sess = arts.session()
    t = arts.host.prefill_len
    for s in range(0, len(window), t):
        chunk = window[s : s + t]
        values, caches = sess.inputs(arts.prefill_sig, chunk, t)
        yield arts.prefill_sig, {**values, **{k: v.copy() for k, v in caches.items()}}
        sess.run(arts.prefill_sig, values, caches, len(chunk), want_logits=False)
        nxt = s + t
        if nxt < len(window) and sess.capacity >= 1:
            values, caches = sess.inputs(layout.DECODE, window[nxt : nxt + 1], 1)
            yield layout.DECODE, {**values, **{k: v.copy() for k, v in caches.items()}}
