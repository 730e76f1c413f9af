"""SmoothQuant-style scale migration on the PyTorch model before export: same function, narrower int8 inputs.

Every fully-connected layer's input channel j is divided by s_j where it is produced and its weight column j is
multiplied by s_j, with s_j = max|X_j|^α / max|W_j|^(1-α) from the activations of real text (SmoothQuant, Xiao et al.
2023). Where the division goes, in Gemma3:

| FC input                     | divided in                              | weights multiplied |
|------------------------------|-----------------------------------------|--------------------|
| q/k/v_proj                   | input_layernorm's (1 + w)               | q, k, v columns    |
| gate/up_proj                 | pre_feedforward_layernorm's (1 + w)     | gate, up columns   |
| down_proj                    | up_proj's rows (gelu(gate) · up is linear in up) | down columns |
| o_proj                       | v_proj's rows (attention averages V; one s per KV channel, shared by its query heads) | o columns |
| LM head                      | the final norm's (1 + w)                | LM head columns (untied from the embedder first) |

Choose it (`--smooth 0.5`) for variants with int8 activations on the fully-connected layers; int16 variants do not
need it. α closer to 1 moves more range into the weights (which are int8 per channel, so they absorb it less well).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn


def _abs_max_hooks(model: nn.Module) -> tuple[dict[str, torch.Tensor], list]:
    """Forward pre-hooks recording the per-channel |input| max of every nn.Linear, by module name."""
    stats: dict[str, torch.Tensor] = defaultdict(lambda: None)
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            def hook(_m, args, name=name):
                m = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()
                stats[name] = m if stats[name] is None else torch.maximum(stats[name], m)
            handles.append(mod.register_forward_pre_hook(hook))
    return stats, handles


@torch.no_grad()
def activation_maxima(hf_model: nn.Module, windows: list[list[int]]) -> dict[str, torch.Tensor]:
    """Per-input-channel |activation| max of every Linear over token windows (each a list of ids)."""
    stats, handles = _abs_max_hooks(hf_model)
    try:
        for ids in windows:
            hf_model(torch.tensor([ids]), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return dict(stats)


def _migration(x_max: torch.Tensor, w_max: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant's s = max|X|^α / max|W|^(1-α), per input channel."""
    s = x_max.clamp(min=1e-5).pow(alpha) / w_max.clamp(min=1e-5).pow(1 - alpha)
    return s.clamp(min=1e-5)


def _scales(x_max: torch.Tensor, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """Scales for the input columns several Linears share (their per-column |W| max taken together)."""
    return _migration(x_max, torch.stack([w.abs().amax(0) for w in weights]).amax(0).float(), alpha)


def _into_norm(norm: nn.Module, s: torch.Tensor) -> None:
    """Gemma3RMSNorm multiplies by (1 + w): make that (1 + w) / s."""
    norm.weight.copy_((1.0 + norm.weight.float()) / s - 1.0)


@torch.no_grad()
def smooth(hf_model: nn.Module, maxima: dict[str, torch.Tensor], alpha: float) -> dict[str, float]:
    """Apply scale migration in place; returns the largest scale per site (for the manifest)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    report: dict[str, float] = {}
    cfg = hf_model.config
    rep = cfg.num_attention_heads // cfg.num_key_value_heads
    for i, layer in enumerate(hf_model.model.layers):
        p, attn, mlp = f"model.layers.{i}", layer.self_attn, layer.mlp
        s = _scales(maxima[f"{p}.self_attn.q_proj"], [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight], alpha)
        _into_norm(layer.input_layernorm, s)
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
            lin.weight.mul_(s)
        s = _scales(maxima[f"{p}.mlp.gate_proj"], [mlp.gate_proj.weight, mlp.up_proj.weight], alpha)
        _into_norm(layer.pre_feedforward_layernorm, s)
        mlp.gate_proj.weight.mul_(s)
        mlp.up_proj.weight.mul_(s)
        s_down = _scales(maxima[f"{p}.mlp.down_proj"], [mlp.down_proj.weight], alpha)
        mlp.up_proj.weight.div_(s_down[:, None])
        mlp.down_proj.weight.mul_(s_down)
        # o_proj input channel (h, d) is head h's average of V channel d of KV head h // rep: one scale per V channel.
        d = cfg.head_dim
        x_o = maxima[f"{p}.self_attn.o_proj"].view(cfg.num_key_value_heads, rep, d).amax(1)
        w_o = attn.o_proj.weight.view(-1, cfg.num_key_value_heads, rep, d).abs().amax(0).amax(1).float()
        s_o = _migration(x_o, w_o, alpha)  # [kv, d]
        attn.v_proj.weight.div_(s_o.reshape(-1)[:, None])
        attn.o_proj.weight.mul_(s_o[:, None, :].expand(-1, rep, -1).reshape(-1))
        report[f"layer {i}"] = float(max(s.max(), s_down.max(), s_o.max()))
    head = hf_model.lm_head
    s = _scales(maxima["lm_head"], [head.weight], alpha)
    _into_norm(hf_model.model.norm, s)
    # The LM head shares its weight with the embedder's table; scale a copy so embeddings stay as they are.
    head.weight = nn.Parameter(head.weight.detach() * s, requires_grad=False)
    report["lm_head"] = float(s.max())
    return report
