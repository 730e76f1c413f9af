"""The NPU layout: signature names, tensor names and shapes — LiteRT-LM's own, so a bundle needs no renaming.

The names are those LiteRT-LM's NPU executor looks up (runtime/executor/npu/ in LiteRT-LM; docs/litert-lm.md).
main is stateless. For a chunk of T new tokens at positions [p, p+T) it takes:
  embeddings                      [1, T, hidden]         float
  mask_global, mask_local         [1, 1, T, C + T]       additive mask over (cache slots, new tokens), 0 = visible
  pos_emb_cos, pos_emb_sin        [1, T, 1, head_dim]    RoPE of the global layers at the new positions
  pos_emb_local_cos/_sin          [1, T, 1, head_dim]    RoPE of the local (sliding-window) layers
  kv_cache_k_i, kv_cache_v_i      [1, kv_heads, C, head_dim] per layer
and returns kv_slice_k_i, kv_slice_v_i [1, kv_heads, T, head_dim]: the new keys/values, which the host writes into its
caches at positions [p, p+T). decode (T = 1) also returns `logits` [1, 1, vocab]; prefill returns none, as LiteRT-LM's
NPU models: the last token of a prompt goes through decode, whose logits pick the first new token.
The embedder has signatures prefill_embedder_<T> and decode_embedder: token_ids [1, T] int32 → embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

# Additive mask value. -100 rather than -inf: softmax weight e^-100 is zero in float32, yet the range stays small, so a
# quantized mask (and the score + mask sum) keeps fine resolution for the real scores. Masked slots that were never
# written hold zero keys (score 0), so -100 masks them exactly.
MASK_VALUE = -100.0

EMBEDDINGS = "embeddings"
MASK_GLOBAL, MASK_LOCAL = "mask_global", "mask_local"
# (global cos, global sin, local cos, local sin)
ROPE = ("pos_emb_cos", "pos_emb_sin", "pos_emb_local_cos", "pos_emb_local_sin")
MAIN_INPUTS = (EMBEDDINGS, MASK_GLOBAL, MASK_LOCAL, *ROPE)
EMBEDDER_INPUT = "token_ids"
EMBEDDER_OUTPUT = EMBEDDINGS
LOGITS = "logits"
DECODE = "decode"


def kv_cache(kind: str, i: int) -> str:
    """`kv_cache_k_<i>` or `kv_cache_v_<i>` (kind "k" or "v")."""
    return f"kv_cache_{kind}_{i}"


def kv_slice(kind: str, i: int) -> str:
    return f"kv_slice_{kind}_{i}"


def is_cache(name: str) -> bool:
    return name.startswith("kv_cache_")


def slice_of(cache: str) -> str:
    """The slice output that a cache input receives (kv_cache_k_3 → kv_slice_k_3)."""
    return cache.replace("kv_cache_", "kv_slice_", 1)


def prefill_signature(prefill_len: int) -> str:
    return f"prefill_{prefill_len}"


def embedder_signature(main_signature: str) -> str:
    """The embedder signature that feeds a main signature: prefill_<T> → prefill_embedder_<T>, decode →
    decode_embedder."""
    return "decode_embedder" if main_signature == DECODE else main_signature.replace("prefill_", "prefill_embedder_", 1)


@dataclass(frozen=True)
class ExportConfig:
    """How main is shaped.

    prefill_len: tokens per prefill call; a longer prompt is run in chunks. 64 keeps the prefill attention-mask ADD
      (2 B × heads × T × (C + T)) under the 1 MiB Qualcomm's HTP handles with Gemma3's 4 heads and a 1280-slot cache
      (LiteRT-LM #3508: above it every chunk after the first is lost; `quantlab check --target qnn` flags it). Choose
      128 only with cache_len ≤ 896.
    cache_len: KV cache slots; the longest context (prompt + generated tokens). 1280 is LiteRT's NPU default; every
      slot costs memory and attention time in every call, so choose the smallest that fits your use.
    smooth_alpha: 0 exports the model as it is; in (0, 1) applies SmoothQuant scale migration first (same function,
      narrower inputs to every fully-connected layer; see quantlab/export/smooth.py). Choose 0.5 when you want int8
      activations on the fully-connected layers.
    rotate: how many massive residual channels to spread with a rotation of the residual stream before export (same
      function; see quantlab/export/rotate.py). 0: none. Gemma3-270M has one (channel 163, ~100,000 against ~1,000 for
      the next); 1 narrows its residual stream 100,000 → 8,000, which every quantized variant must hold.
    hadamard: block-Hadamard rotations folded around the fully-connected layers (same function; see
      quantlab/export/hadamard.py). On by default: it lets the search put int8 activations on the fully-connected
      layers (a16_a8 recipes);
      int16 variants do not need it.
    """

    prefill_len: int = 64
    cache_len: int = 1280
    smooth_alpha: float = 0.0
    rotate: int = 1
    hadamard: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.prefill_len <= 4096:
            raise ValueError(f"prefill_len must be between 1 and 4096, got {self.prefill_len}; try 128")
        if self.cache_len < self.prefill_len:
            raise ValueError(
                f"cache_len ({self.cache_len}) must be at least prefill_len ({self.prefill_len}); raise --cache-len"
            )
        if self.cache_len > 32768:
            raise ValueError(f"cache_len must be at most 32768, got {self.cache_len}")
        if not 0.0 <= self.smooth_alpha < 1.0:
            raise ValueError(f"smooth alpha must be in [0, 1), got {self.smooth_alpha}; try 0.5 (or 0 for none)")
        if not 0 <= self.rotate <= 64:
            raise ValueError(f"rotate must be between 0 and 64 channels, got {self.rotate}; try 1 (or 0 for none)")

    @property
    def prefill_signature(self) -> str:
        return prefill_signature(self.prefill_len)

    def signatures(self) -> dict[str, int]:
        """Signature name → tokens per call."""
        return {self.prefill_signature: self.prefill_len, DECODE: 1}
