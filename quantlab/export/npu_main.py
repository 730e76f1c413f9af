"""main in the NPU layout, as a PyTorch module over a transformers Gemma3 model's own weights and submodules.

Why not convert transformers' attention directly: `litert_torch.convert` mis-lowers its `repeat_kv` (expand + reshape,
then transpose) — top-1 agreement 11 %, with no error. Here grouped-query attention reshapes Q to
[1, kv_heads, rep * T, D] and multiplies against the un-repeated K/V, which lowers exactly. Scores against the cache and
against the new keys are computed separately and concatenated, so the cache is only read, never copied or updated.
Projections and MLP are transformers' own modules. Every RMSNorm is one `odml.rms_norm` StableHLO composite (as in
litert-torch's own Gemma3 export): the quantizer can then give the norm one int16 input and output and keep its inner
arithmetic (square, mean, rsqrt) in float on the CPU, and QNN maps the composite to its native RmsNorm. Decomposed into
integer ops, x² of a residual stream that reaches ~88,000 loses every ordinary token (int16 perplexity +29 %).
"""

from __future__ import annotations

import torch
from litert_torch.generative.custom_ops.bmm_4d import bmm_4d
from litert_torch.generative.layers.normalization import rms_norm_with_hlfb
from torch import nn

from quantlab import layout


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [1, heads, T, D]; cos/sin: [1, T, 1, D] (LiteRT-LM's shape) viewed as [1, 1, T, D] to broadcast over heads
    t, d = cos.shape[1], cos.shape[3]
    return x * cos.reshape(1, 1, t, d) + _rotate_half(x) * sin.reshape(1, 1, t, d)


class CompositeRMSNorm(nn.Module):
    """transformers' Gemma3RMSNorm (x / rms(x) * (1 + w)) exported as one `odml.rms_norm` composite."""

    def __init__(self, hf_norm: nn.Module) -> None:
        super().__init__()
        self.weight = hf_norm.weight
        self.eps = hf_norm.eps

    def forward(self, x):
        w = 1.0 + self.weight.float()
        return rms_norm_with_hlfb(x.float(), w, self.eps, torch.ones_like(w)).type_as(x)


def after_norm(hf_norm: nn.Module) -> nn.Module:
    """What a norm of a rotated stream does after the norm itself (quantlab/export/rotate.py, hadamard.py), else nothing.

    It is a sibling of the norm's module, not a child: tensor names under `CompositeRMSNorm` match the recipes' norm
    entries, which keep the composite's insides float (an int16_w8 main had 640 float ops that way)."""
    after = getattr(hf_norm, "after", None)
    return nn.Identity() if after is None else after  # not `or`: a module's truth is its length (Sequential)


class NpuAttention(nn.Module):
    """One Gemma3 attention layer over a host-managed cache."""

    def __init__(self, hf_attn: nn.Module, config) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (
            hf_attn.q_proj,
            hf_attn.k_proj,
            hf_attn.v_proj,
            hf_attn.o_proj,
        )
        self.q_norm, self.k_norm = CompositeRMSNorm(hf_attn.q_norm), CompositeRMSNorm(hf_attn.k_norm)
        self.q_after, self.k_after = after_norm(hf_attn.q_norm), after_norm(hf_attn.k_norm)  # --hadamard's
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scaling = config.query_pre_attn_scalar**-0.5
        self.softcap = config.attn_logit_softcapping

    def forward(self, x, mask, cos, sin, k_cache, v_cache):
        t = x.shape[1]
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        rep = h // kv
        q = self.q_after(self.q_norm(self.q_proj(x).view(1, t, h, d))).transpose(1, 2)
        k = self.k_after(self.k_norm(self.k_proj(x).view(1, t, kv, d))).transpose(1, 2)
        v = self.v_proj(x).view(1, t, kv, d).transpose(1, 2)
        q = _rope(q, cos, sin)
        k = _rope(k, cos, sin)
        # Heads h*rep .. h*rep+rep-1 share KV head h (transformers' repeat_kv order).
        q = (q * self.scaling).reshape(1, kv, rep * t, d)
        # bmm_4d (q · kᵀ as one batched dot) rather than matmul with a transpose: the converter turns the latter into a
        # FULLY_CONNECTED with the cache as its "weights", which QNN HTP rejects at int16 (QNN error 3110).
        scores = torch.cat((bmm_4d(q, k_cache), bmm_4d(q, k)), dim=-1)  # [1, kv, rep*t, C+t]
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        s = scores.shape[-1]
        scores = scores.reshape(1, h, t, s) + mask  # mask [1, 1, t, C+t] broadcasts over heads
        probs = torch.softmax(scores, dim=-1).reshape(1, kv, rep * t, s)
        c = k_cache.shape[2]
        out = torch.matmul(probs[..., :c], v_cache) + torch.matmul(probs[..., c:], v)  # [1, kv, rep*t, d]
        out = out.reshape(1, h, t, d).transpose(1, 2).reshape(1, t, h * d)
        return self.o_proj(out), k, v


class NpuDecoderLayer(nn.Module):
    def __init__(self, hf_layer: nn.Module, config, is_global: bool) -> None:
        super().__init__()
        self.attn = NpuAttention(hf_layer.self_attn, config)
        self.mlp = hf_layer.mlp
        self.input_layernorm = CompositeRMSNorm(hf_layer.input_layernorm)
        self.post_attention_layernorm = CompositeRMSNorm(hf_layer.post_attention_layernorm)
        self.pre_feedforward_layernorm = CompositeRMSNorm(hf_layer.pre_feedforward_layernorm)
        self.post_feedforward_layernorm = CompositeRMSNorm(hf_layer.post_feedforward_layernorm)
        self.input_after = after_norm(hf_layer.input_layernorm)
        self.post_attention_after = after_norm(hf_layer.post_attention_layernorm)
        self.pre_feedforward_after = after_norm(hf_layer.pre_feedforward_layernorm)
        self.post_feedforward_after = after_norm(hf_layer.post_feedforward_layernorm)
        self.is_global = is_global

    def forward(self, x, mask, cos, sin, k_cache, v_cache):
        a, k, v = self.attn(self.input_after(self.input_layernorm(x)), mask, cos, sin, k_cache, v_cache)
        x = x + self.post_attention_after(self.post_attention_layernorm(a))
        h = self.mlp(self.pre_feedforward_after(self.pre_feedforward_layernorm(x)))
        x = x + self.post_feedforward_after(self.post_feedforward_layernorm(h))
        return x, k, v


class NpuGemma3Main(nn.Module):
    """Transformer body + final norm + LM head; stateless (caches in, new K/V slices out). Called with one token
    (decode) it returns logits; with more (prefill), only the K/V slices."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        config = hf_model.config
        self.layers = nn.ModuleList(
            NpuDecoderLayer(layer, config, config.layer_types[i] == "full_attention")
            for i, layer in enumerate(hf_model.model.layers)
        )
        self.norm = CompositeRMSNorm(hf_model.model.norm)
        self.norm_after = after_norm(hf_model.model.norm)
        # One LM head and one `logits` output, as LiteRT-LM reads it (one tensor, one scale). QNN once failed to
        # prepare a 262,144-wide int16 LM head inside prefill; in decode alone it compiles (see docs/litert-lm.md).
        self.lm_head = hf_model.lm_head
        self.final_softcap = config.final_logit_softcapping

    def forward(self, embeddings, mask_global, mask_local, pos_emb_cos, pos_emb_sin, pos_emb_local_cos,
                pos_emb_local_sin, kv_cache_k, kv_cache_v):
        x = embeddings
        k_out, v_out = [], []
        for i, layer in enumerate(self.layers):
            if layer.is_global:
                x, k, v = layer(x, mask_global, pos_emb_cos, pos_emb_sin, kv_cache_k[i], kv_cache_v[i])
            else:
                x, k, v = layer(x, mask_local, pos_emb_local_cos, pos_emb_local_sin, kv_cache_k[i], kv_cache_v[i])
            k_out.append(k)
            v_out.append(v)
        slices = {"kv_slice_k": k_out, "kv_slice_v": v_out}
        if x.shape[1] > 1:
            # Prefill returns no logits (as LiteRT-LM's NPU models): the host decodes the prompt's last token for the
            # first new one. At 262k vocabulary the LM head would be a third of prefill's work, and its per-channel
            # quantization parameters a second copy in the file (270M: compiled main 286.5 → 281.1 MB).
            return slices
        logits = self.lm_head(self.norm_after(self.norm(x)))
        if self.final_softcap is not None:
            logits = torch.tanh(logits / self.final_softcap) * self.final_softcap
        return {layout.LOGITS: logits, **slices}


class Embedder(nn.Module):
    """Token ids → scaled embeddings (Gemma3 multiplies by sqrt(hidden))."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.embed = hf_model.model.embed_tokens

    def forward(self, token_ids):
        return {layout.EMBEDDER_OUTPUT: self.embed(token_ids)}


def sample_main_inputs(config, export: layout.ExportConfig, t: int) -> dict:
    """Example inputs for tracing one signature (zeros; only the shapes matter)."""
    c, kv, d = export.cache_len, config.num_key_value_heads, config.head_dim
    n = config.num_hidden_layers
    return {
        layout.EMBEDDINGS: torch.zeros(1, t, config.hidden_size),
        layout.MASK_GLOBAL: torch.zeros(1, 1, t, c + t),
        layout.MASK_LOCAL: torch.zeros(1, 1, t, c + t),
        **{name: torch.zeros(1, t, 1, d) for name in layout.ROPE},
        "kv_cache_k": [torch.zeros(1, kv, c, d) for _ in range(n)],
        "kv_cache_v": [torch.zeros(1, kv, c, d) for _ in range(n)],
    }
