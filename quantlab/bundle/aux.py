"""The auxiliary model LiteRT-LM's NPU executor requires beside main (`tf_lite_aux`), for quantlab's cache layout.

Signatures (T = prefill length, C = cache length; names as LiteRT-LM's runtime/executor/npu/ reads them):
  prefill_rope_<T> / decode_rope                 input_pos int32 [T]  →  pos_emb_cos/_sin, pos_emb_local_cos/_sin
  prefill_mask_<T> / decode_mask                 input_tokens int32 [1, T], time_step int32 [], valid_mask bool [1, T]
                                                 →  mask_global, mask_local [1, 1, T, C + T]
  prefill_cache_update_<T> / decode_cache_update kv_cache_*, kv_slice_*, input_pos  →  kv_cache_* (in place)

The executor writes these outputs straight into main's input buffers, so each comes out in main's own dtype and scale.
Nothing here is calibrated: RoPE is gathered from tables the host computes in float over every position the cache
holds (quantlab's HostParams.rope) and, for an integer main, quantized exactly as quantlab's runtime quantizes them;
main's RoPE and mask ranges are their legal ranges ([-1, 1], [-100, 0]; calibration/ranges.py pins them), so a late
position can never saturate (Google's bundle calibrated its RoPE model on prompts that stopped at position 421).
Masks follow quantlab's rule (cache slot j visible iff j < time_step; new token k visible to row i iff k <= i and
valid; local layers also need key > query - sliding_window). LiteRT-LM 0.18.1 computes the local mask itself with a
fixed 512-token window and updates the caches itself (a raw byte copy), but runs every aux signature at warm-up: they
must exist and agree with it (docs/litert-lm.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quantlab import layout


@dataclass(frozen=True)
class TensorType:
    """The dtype and quantization of one of main's inputs (scale None: float)."""

    dtype: str = "float32"
    scale: float | None = None
    zero_point: int = 0

    @classmethod
    def of(cls, t) -> "TensorType":
        """From a flatbuffer tensor (quantlab/check/graph.py's Tensor)."""
        if t.dtype not in ("INT8", "INT16") or not t.scales:
            return cls()
        return cls(t.dtype.lower(), t.scales[0], t.zero_points[0] if t.zero_points else 0)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """As quantlab's runtime does (TensorSpec.quantize)."""
        x = np.asarray(x, np.float32)
        if self.scale is None:
            return x
        info = np.iinfo(self.dtype)
        return np.clip(np.round(x / np.float32(self.scale)) + self.zero_point, info.min, info.max).astype(self.dtype)

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "int16": torch.int16, "int8": torch.int8}[self.dtype]


class Rope(nn.Module):
    """input_pos [T] → the four RoPE tensors [1, T, 1, D], gathered from per-position tables (exact with the host)."""

    def __init__(self, tables: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.names = list(tables)
        for name, table in tables.items():
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(table)), persistent=False)

    def forward(self, input_pos):
        idx = input_pos.to(torch.int32)
        return {name: torch.index_select(getattr(self, name), 0, idx)[None, :, None, :] for name in self.names}


class Mask(nn.Module):
    """quantlab's additive masks from time_step and valid_mask, already in main's mask values."""

    def __init__(self, cache_len: int, t: int, window: int, values: dict[str, tuple], dtypes: dict[str, torch.dtype]):
        super().__init__()
        self.c, self.t, self.window, self.values, self.dtypes = cache_len, t, window, values, dtypes
        self.register_buffer("cache_pos", torch.arange(cache_len, dtype=torch.int32)[None, :], persistent=False)
        self.register_buffer("rows", torch.arange(t, dtype=torch.int32)[:, None], persistent=False)
        self.register_buffer("cols", torch.arange(t, dtype=torch.int32)[None, :], persistent=False)

    def forward(self, input_tokens, time_step, valid_mask):
        ts = time_step.reshape(()).to(torch.int32)
        pos_q = ts + self.rows
        cache_vis = (self.cache_pos < ts).expand(self.t, self.c)
        real = valid_mask.reshape(1, self.t) & (input_tokens.reshape(1, self.t) != -1)
        new_vis = (self.cols <= self.rows) & real
        visible = {layout.MASK_GLOBAL: torch.cat([cache_vis, new_vis], dim=-1)[None, None],
                   layout.MASK_LOCAL: torch.cat([cache_vis & (self.cache_pos > pos_q - self.window),
                                                 new_vis & ((ts + self.cols) > pos_q - self.window)], dim=-1)[None, None]}
        out = {}
        for name, vis in visible.items():
            shown, hidden = self.values[name]
            dt = self.dtypes[name]
            out[name] = torch.where(vis, torch.tensor(shown, dtype=dt), torch.tensor(hidden, dtype=dt))
        return out


class CacheUpdate(nn.Module):
    """Writes each layer's new K/V slices into its cache at input_pos[0] (sequence axis 2 of [1, kv, C, D]). Slices
    and caches share one scale (calibration aligns them), so this is a plain copy, as LiteRT-LM's own update is."""

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.n = n_layers

    def forward(self, kv_cache_k, kv_cache_v, kv_slice_k, kv_slice_v, input_pos):
        from litert_torch.generative.custom_ops.dynamic_update_slice import dynamic_update_slice

        zero = torch.zeros((), dtype=torch.int32)
        idx = [zero, zero, input_pos[0].to(torch.int32), zero]
        out = {}
        for i in range(self.n):
            out[layout.kv_cache("k", i)] = dynamic_update_slice(kv_cache_k[i], kv_slice_k[i], idx)
            out[layout.kv_cache("v", i)] = dynamic_update_slice(kv_cache_v[i], kv_slice_v[i], idx)
        return out


def build_aux(host, n_layers: int, kv_heads: int, head_dim: int, types: dict[str, TensorType], out_path: Path) -> Path:
    """Convert the aux model for HostParams `host`; `types` gives main's decode input types by name (RoPE, masks,
    caches; float where absent)."""
    import litert_torch

    litert_torch.config.show_progress = False
    c, t_pre = host.cache_len, host.prefill_len
    f32 = TensorType()
    pos = np.arange(c + t_pre)  # a prefill call's padded slots may run past the cache; the executor feeds 0 there
    cos_g, sin_g = host.rope(pos, local=False)
    cos_l, sin_l = host.rope(pos, local=True)
    tables = {name: types.get(name, f32).quantize(tab[0, :, 0])
              for name, tab in zip(layout.ROPE, (cos_g, sin_g, cos_l, sin_l))}
    mv = np.float32(host.mask_value)
    mask_values = {n: (types.get(n, f32).quantize(np.float32(0)).item(), types.get(n, f32).quantize(mv).item())
                   for n in (layout.MASK_GLOBAL, layout.MASK_LOCAL)}
    mask_dtypes = {n: types.get(n, f32).torch_dtype for n in (layout.MASK_GLOBAL, layout.MASK_LOCAL)}

    def cache_inputs(t: int) -> dict:
        def zeros(name, rows):
            return torch.zeros(1, kv_heads, rows, head_dim, dtype=types.get(name, f32).torch_dtype)

        return {f"kv_{what}_{kind}": [zeros(layout.kv_cache(kind, i), c if what == "cache" else t)
                                      for i in range(n_layers)]
                for what in ("cache", "slice") for kind in "kv"} | {"input_pos": torch.zeros(t, dtype=torch.int32)}

    conv = litert_torch
    for sig, t in ((layout.prefill_signature(t_pre), t_pre), (layout.DECODE, 1)):
        prefix, suffix = ("prefill", f"_{t}") if sig != layout.DECODE else ("decode", "")
        conv = conv.signature(f"{prefix}_rope{suffix}", Rope(tables).eval(),
                              sample_kwargs={"input_pos": torch.arange(t, dtype=torch.int32)})
        conv = conv.signature(f"{prefix}_mask{suffix}",
                              Mask(c, t, host.sliding_window, mask_values, mask_dtypes).eval(),
                              sample_kwargs={"input_tokens": torch.zeros(1, t, dtype=torch.int32),
                                             "time_step": torch.tensor(0, dtype=torch.int32),
                                             "valid_mask": torch.ones(1, t, dtype=torch.bool)})
        conv = conv.signature(f"{prefix}_cache_update{suffix}", CacheUpdate(n_layers).eval(),
                              sample_kwargs=cache_inputs(t))
    edge = conv.convert()
    edge.export(str(out_path))
    return Path(out_path)
