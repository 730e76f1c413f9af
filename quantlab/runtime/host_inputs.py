"""Host-side math for main's inputs: attention masks and RoPE tables, in float32 numpy.

These run on the CPU in every variant (they are cheap and exact), so they are never quantized into a model: a quantized
RoPE table calibrated on early positions saturates at late ones (seen in Google's NPU pipeline past position 421).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantlab.layout import MASK_GLOBAL, MASK_LOCAL, MASK_VALUE, ROPE


@dataclass(frozen=True)
class HostParams:
    """Everything the host needs besides the models; saved in manifest.json by the exporter."""

    cache_len: int
    prefill_len: int
    sliding_window: int
    inv_freq_global: tuple[float, ...]
    inv_freq_local: tuple[float, ...]
    scaling_global: float = 1.0
    scaling_local: float = 1.0
    mask_value: float = MASK_VALUE

    def __post_init__(self) -> None:
        if self.sliding_window < 1:
            raise ValueError(f"sliding_window must be positive, got {self.sliding_window}")

    @classmethod
    def from_dict(cls, raw: dict) -> "HostParams":
        """From the manifest's `host` record (JSON lists back to tuples)."""
        return cls(**{**raw, "inv_freq_global": tuple(raw["inv_freq_global"]),
                      "inv_freq_local": tuple(raw["inv_freq_local"])})

    def rope(self, positions: np.ndarray, local: bool) -> tuple[np.ndarray, np.ndarray]:
        """cos, sin of shape [1, T, 1, head_dim] for `positions` (transformers' cat(freqs, freqs) layout; LiteRT-LM's
        shape)."""
        inv = np.asarray(self.inv_freq_local if local else self.inv_freq_global, dtype=np.float32)
        scale = np.float32(self.scaling_local if local else self.scaling_global)
        freqs = positions.astype(np.float32)[:, None] * inv[None, :]
        emb = np.concatenate([freqs, freqs], axis=-1)
        return ((np.cos(emb) * scale)[None, :, None].astype(np.float32),
                (np.sin(emb) * scale)[None, :, None].astype(np.float32))

    def masks(self, start: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Global and local additive masks [1, 1, t, C + t] for new tokens at positions start .. start + t - 1.

        Cache slot j holds position j and is visible once written (j < start). New token k is visible to row i when
        k <= i. The local mask also hides anything `sliding_window` or more positions back (transformers' rule:
        key position > query position - window).
        """
        c = self.cache_len
        pos_q = start + np.arange(t)[:, None]  # [t, 1]
        key_pos = np.concatenate([np.arange(c), start + np.arange(t)])[None, :]  # [1, C+t]
        is_cache = np.concatenate([np.ones(c, bool), np.zeros(t, bool)])[None, :]
        visible = np.where(is_cache, key_pos < start, key_pos <= pos_q)
        local_visible = visible & (key_pos > pos_q - self.sliding_window)
        value = np.float32(self.mask_value)
        to_mask = lambda v: np.where(v, np.float32(0), value)[None, None].astype(np.float32)  # noqa: E731
        return to_mask(visible), to_mask(local_visible)

    def main_inputs(self, start: int, t: int) -> dict[str, np.ndarray]:
        """Masks and RoPE for one call of a `t`-token signature starting at `start`."""
        positions = start + np.arange(t)
        mask_global, mask_local = self.masks(start, t)
        cos_g, sin_g = self.rope(positions, local=False)
        cos_l, sin_l = self.rope(positions, local=True)
        return {MASK_GLOBAL: mask_global, MASK_LOCAL: mask_local, **dict(zip(ROPE, (cos_g, sin_g, cos_l, sin_l)))}


def host_params_from_model(hf_model, cache_len: int, prefill_len: int) -> HostParams:
    """Read RoPE frequencies from transformers' own rotary module, so the host matches the reference exactly."""
    rot = hf_model.model.rotary_emb
    return HostParams(
        cache_len=cache_len,
        prefill_len=prefill_len,
        sliding_window=int(hf_model.config.sliding_window),
        inv_freq_global=tuple(float(x) for x in rot.full_attention_inv_freq),
        inv_freq_local=tuple(float(x) for x in rot.sliding_attention_inv_freq),
        scaling_global=float(rot.full_attention_attention_scaling),
        scaling_local=float(rot.sliding_attention_attention_scaling),
    )
