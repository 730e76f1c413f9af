"""The NPU layout: signature names, tensor names and shapes shared by the exporter and the host runtime.

main is stateless. For a chunk of T new tokens at positions [p, p+T) it takes:
  embeddings        [1, T, hidden]          float
  mask_global       [1, 1, T, C + T]        additive mask over (cache slots, new tokens), 0 = visible
  mask_local        [1, 1, T, C + T]        the same, restricted to the sliding window
  cos_global/sin_global, cos_local/sin_local  [1, T, head_dim]  RoPE at the new positions
  k_cache_i, v_cache_i                      [1, kv_heads, C, head_dim] per layer
and returns k_slice_i, v_slice_i [1, kv_heads, T, head_dim]: the new keys/values, which the host writes into its
caches at positions [p, p+T). decode (T = 1) also returns logits [1, 1, vocab] (as blocks logits_0.. logits_3 of 65,536
for Gemma3's 262,144 vocabulary); prefill returns none, as LiteRT-LM's NPU models: a prompt of n tokens is n-1 tokens
of prefill, then its last token through decode, whose logits pick the first new token.
"""

from __future__ import annotations

from dataclasses import dataclass

# Additive mask value. -100 rather than -inf: softmax weight e^-100 is zero in float32, yet the range stays small, so a
# quantized mask (and the score + mask sum) keeps fine resolution for the real scores. Masked slots that were never
# written hold zero keys (score 0), so -100 masks them exactly.
MASK_VALUE = -100.0

MAIN_INPUTS = ("embeddings", "mask_global", "mask_local", "cos_global", "sin_global", "cos_local", "sin_local")
EMBEDDER_INPUT = "tokens"
EMBEDDER_OUTPUT = "embeddings"
LOGITS = "logits"


def logits_names(output_names) -> list[str]:
    """main's logits outputs in vocabulary order: `logits`, or `logits_0`, `logits_1`, ... when the LM head is
    returned in blocks (see export/npu_main.py: one 262,144-wide int16 tensor does not prepare on the QNN HTP)."""
    if LOGITS in output_names:
        return [LOGITS]
    blocks = sorted((n for n in output_names if n.startswith(LOGITS + "_")), key=lambda n: int(n.rsplit("_", 1)[1]))
    if not blocks:
        raise ValueError(f"no logits output among {sorted(output_names)}")
    return blocks


def k_cache(i: int) -> str:
    return f"k_cache_{i}"


def v_cache(i: int) -> str:
    return f"v_cache_{i}"


def k_slice(i: int) -> str:
    return f"k_slice_{i}"


def v_slice(i: int) -> str:
    return f"v_slice_{i}"


def prefill_signature(prefill_len: int) -> str:
    return f"prefill_{prefill_len}"


DECODE = "decode"


@dataclass(frozen=True)
class ExportConfig:
    """How main is shaped.

    prefill_len: tokens per prefill call. 128 suits the NPU (one graph, fixed shape); a longer prompt is run in chunks.
      Choose smaller to cut prefill latency for short prompts, larger for throughput on long ones.
    cache_len: KV cache slots; the longest context (prompt + generated tokens). 1280 is LiteRT's NPU default; every
      slot costs memory and attention time in every call, so choose the smallest that fits your use.
    smooth_alpha: 0 exports the model as it is; in (0, 1) applies SmoothQuant scale migration first (same function,
      narrower inputs to every fully-connected layer; see quantlab/export/smooth.py). Choose 0.5 when you want int8
      activations on the fully-connected layers.
    rotate: how many massive residual channels to spread with a rotation of the residual stream before export (same
      function; see quantlab/export/rotate.py). 0: none. Gemma3-270M has one (channel 163, ~100,000 against ~1,000 for
      the next); 1 narrows its residual stream 100,000 → 8,000, which every quantized variant must hold.
    hadamard: block-Hadamard rotations folded around the fully-connected layers (same function; see
      quantlab/export/hadamard.py). Choose it for int8 activations on the fully-connected layers (a16_a8 recipes);
      int16 variants do not need it.
    """

    prefill_len: int = 128
    cache_len: int = 1280
    smooth_alpha: float = 0.0
    rotate: int = 1
    hadamard: bool = False

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
