"""Realistic inputs for main's signatures, captured by running calibration text through the FP32 host pipeline.

The texts are joined into one token stream and cut into windows that start with BOS. Each window is prefilled chunk by
chunk; every chunk's inputs (real embeddings, masks and RoPE at real positions, caches holding the real keys and values
of the tokens before it) are one `prefill_<T>` sample, and the next token's inputs at the chunk boundary are one
`decode` sample. Decode is also sampled inside every chunk, every `decode_stride` positions: decode is the only
signature with the final norm and the LM head (prefill returns no logits), so a sample per chunk alone (18 tokens on
the 270M) fits the logits' range to a handful of tokens and int16 clips the likeliest ones. Measured on the 270M
(int16_w8, 1,279 held-out tokens vs FP32): boundary samples only KL 0.46, top-1 69 %; every 8th position KL 0.054,
88.4 % (logits calibrated to ±34); every position KL 0.039, 90.0 % (±43). Joining the texts first means a short
prompt never yields a sample whose caches are all zero. Windows as long as the cache cover every position main can
see, so no cache, mask or RoPE range is fitted to early positions only.
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

    Each window gives ceil(window_len / prefill_len) prefill samples and, per chunk, one decode sample at its boundary
    plus one every `decode_stride` positions inside it. More windows give ranges closer to what unseen text produces
    (the tails matter for min-max). decode_stride: 1 (default) samples decode at every position, which the LM head's
    range needs (270M: calibration 27 s → 219 s, worth it, see above); raise it only to calibrate faster at a cost in
    accuracy; 0 keeps only the boundary samples.
    """

    windows: int = 2
    window_len: int | None = None
    decode_stride: int = 1

    def __post_init__(self) -> None:
        if self.windows < 1:
            raise ValueError(f"samples (windows) must be at least 1, got {self.windows}")
        if self.window_len is not None and self.window_len < 2:
            raise ValueError(f"window_len must be at least 2, got {self.window_len}")
        if self.decode_stride < 0:
            raise ValueError(f"decode_stride must be 0 (boundary samples only) or more, got {self.decode_stride}")


def token_windows(arts: ArtifactSet, texts: list[str], plan: CapturePlan) -> list[list[int]]:
    """Cut the joined texts into `plan.windows` windows (BOS first); fewer if the text runs out."""
    length = min(plan.window_len or arts.host.cache_len, arts.host.cache_len)
    stream: list[int] = []
    need = plan.windows * (length - 1)
    for t in texts:
        stream.extend(arts.encode(t)[1:])
        if len(stream) >= need:
            break
    bos = arts.model_info.bos_token_id
    return [[bos, *stream[s : s + length - 1]] for s in range(0, min(len(stream), need), length - 1)]


def capture_window(arts: ArtifactSet, window: list[int],
                   decode_stride: int = CapturePlan.decode_stride) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield (signature, inputs) pairs for one window: each prefill chunk, decode samples inside it, then the decode
    sample at its boundary.

    Every sample that reads the caches in one state shares one copy of them: the decode samples inside a chunk, the
    decode at its boundary and the next chunk's prefill all read the caches as that chunk's prefill left them. One
    copy per chunk, not three (1B shape, 20 chunks of a 1280-token window: 68 MB each, 2.7 GB saved)."""
    sess = arts.session()
    t = arts.host.prefill_len
    state = {k: v.copy() for k, v in sess.caches.items()}
    for s in range(0, len(window), t):
        chunk = window[s : s + t]
        values, caches = sess.inputs(arts.prefill_sig, chunk, t)
        yield arts.prefill_sig, {**values, **state}
        sess.run(arts.prefill_sig, values, caches, len(chunk), want_logits=False)
        state = {k: v.copy() for k, v in sess.caches.items()}
        if decode_stride:
            yield from _decode_inside(sess, window, s, len(chunk), decode_stride, state)
        nxt = s + t
        if nxt < len(window) and sess.capacity >= 1:
            values, _ = sess.inputs(layout.DECODE, window[nxt : nxt + 1], 1)
            yield layout.DECODE, {**values, **state}


def _decode_inside(sess, window: list[int], start: int, n: int, stride: int,
                   state: dict[str, np.ndarray]) -> Iterator[tuple[str, dict]]:
    """Decode samples at positions start+stride-1, start+2*stride-1, ... of a chunk that prefill has just written, and
    at position 0 (BOS) whatever the stride: scoring decodes BOS too, and with the residual stream rotated its
    activations are the widest of all (270M, stride 8 without it: int16_w8 KL 0.22 instead of 0.03, every later token
    attending to BOS's clipped keys and values).

    The caches (`state`, a copy of what prefill wrote) then also hold the chunk's later tokens; the decode mask hides
    every slot from the sample's position on, so the model computes exactly what a decode at that position computes,
    and the cache values are real keys and values."""
    end = sess.pos
    try:
        first = [0] if start == 0 and stride > 1 else []
        for q in [*first, *range(start + stride - 1, start + n, stride)]:
            sess.pos = q
            values, _ = sess.inputs(layout.DECODE, window[q : q + 1], 1)
            yield layout.DECODE, {**values, **state}
    finally:
        sess.pos = end
