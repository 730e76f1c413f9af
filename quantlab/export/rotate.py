"""Rotate Gemma3's residual stream so its massive channels spread over all channels: same function, narrower range.

Gemma3's residual stream carries a few "massive activation" channels. In the 270M, channel 163 reaches ~100,000 (at
BOS and some punctuation) and ~10,000–30,000 on ordinary tokens, while a typical channel is 2–200. A per-tensor
int16 scale set by channel 163 has a step of ~3: noise of 5–10 % on ordinary channels, at every layer.

Here the stream r becomes r·R, R = H_1…H_k a product of Householder reflections H = I − 2vvᵀ, each mapping one
massive channel e_c onto a dense vector of ±1/√d (QuaRot/SpinQuant use a full Hadamard; one reflection per massive
channel is enough here and needs no dense matrix in the graph). RMSNorm is invariant under orthogonal maps
(rms(r·R) = rms(r)), so:

| site                                      | change                                                   |
|-------------------------------------------|----------------------------------------------------------|
| embedding table                           | rows · R (the LM head keeps its own, unrotated copy)     |
| pre-norms (input, pre-feedforward, final) | unit weight, output · Rᵀ, then · (1 + w): the next layers see what they saw |
| post-norms (attention, MLP output)        | output · R                                               |

Each · R or · Rᵀ is k rank-1 updates y ← y − 2(y·v)v, a few small ops each, outside the norm composite.

Choose it (`--rotate K`, K the number of channels; the bundled 270M has one massive channel, 163) for the quantized
variants of a model with massive activations: the stream (the adds and the norms' inputs) narrows 100,000 → ~8,000;
270M int16_w8 KL 0.039 → 0.022, top-1 90.0 → 92.6 %. `--rotate 0` keeps the graph as it was (~450 fewer ops per
signature). The transformers model stays usable (its norms are wrapped), so parity is testable in PyTorch.
"""

from __future__ import annotations

import torch
from torch import nn


class Reflections(nn.Module):
    """y ↦ y·H_1·…·H_k with H_i = I − 2 v_i v_iᵀ (v_i unit rows of `vs`, `channels[i]` the one large entry of v_i).

    y·v_i is a fully-connected op over every channel but the large one (its weights are all ±1/√d times one factor,
    which int8 holds exactly) plus that channel alone. As one dot product it lowers to an elementwise MUL and a SUM,
    whose int16 product tensor is scaled to the large entry and rounds the other 639 terms away (270M, a first build:
    per-tensor SNR 16 dB)."""

    def __init__(self, vs: torch.Tensor, channels: list[int]) -> None:
        super().__init__()
        self.channels = list(channels)
        self.register_buffer("vs", vs.float())
        self.rest = nn.ModuleList()
        for v, c in zip(vs, channels):
            lin = nn.Linear(vs.shape[1], 1, bias=False)
            w = 2.0 * v.float().clone()
            w[c] = 0.0
            lin.weight = nn.Parameter(w[None, :], requires_grad=False)
            self.rest.append(lin)
        self.register_buffer("big", torch.stack([2.0 * v[c] for v, c in zip(vs.float(), channels)]))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        # y − 2(y·v)v with 2(y·v) = rest(y) + y_c·big, written as two broadcast products summed at full width: QNN HTP
        # 2.51 computes an int16 ADD of shape [.., T, 1] (T ≥ 8) that feeds a broadcasting MUL wrongly, or crashes
        # (measured on its simulator, SM8450–SM8850; check rule qnn-int16-add-bcast), which the form
        # `(rest(y) + y_c·big) · v` built in every int16 prefill.
        for i, (v, c) in enumerate(zip(self.vs, self.channels)):
            y = y - (self.rest[i](y) * v + y[..., c : c + 1] * (self.big[i] * v))
        return y


class Gain(nn.Module):
    """y ↦ y · g per channel: a pre-norm's weight, applied after it is rotated back."""

    def __init__(self, g: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("g", g.float())

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.g


class NormThen(nn.Module):
    """A Gemma3RMSNorm followed by `after` (transformers calls it like the norm; the export keeps the norm one
    composite and puts `after`'s ops behind it)."""

    def __init__(self, norm: nn.Module, after: nn.Module, saved: torch.Tensor | None = None) -> None:
        super().__init__()
        self.norm = norm
        self.after = after
        self.weight = norm.weight
        self.eps = norm.eps
        self.saved = saved  # the norm's own weight, if `after` took it over (for `unrotate`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.norm(x))


@torch.no_grad()
def residual_channel_maxima(hf_model: nn.Module, windows: list[list[int]]) -> torch.Tensor:
    """Per-channel |residual| max over every layer's output (and the embeddings) on token windows."""
    top = None
    for ids in windows:
        out = hf_model(torch.tensor([ids]), use_cache=False, output_hidden_states=True)
        for h in out.hidden_states[:-1]:  # the last is after the final norm, not the residual stream
            m = h[0].abs().amax(0).float()
            top = m if top is None else torch.maximum(top, m)
    return top


def massive_channels(maxima: torch.Tensor, k: int) -> list[int]:
    """The k channels with the largest residual maxima."""
    return [int(c) for c in maxima.topk(k).indices]


def _reflection(channel: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """Unit v with (I − 2vvᵀ) e_channel = s/√dim, s random signs (s_channel = −1, so e_channel − target is never 0)."""
    s = torch.randint(0, 2, (dim,), generator=gen).float() * 2 - 1
    s[channel] = -1.0
    v = -s / dim**0.5
    v[channel] += 1.0
    return v / v.norm()


def _read_back(norm: nn.Module, back: Reflections) -> NormThen:
    """A pre-norm of the rotated stream: unit weight (norm(r·R) = norm(r)·R), rotated back, then its own weight.

    Folding the weight into the next layer's weights instead (QuaRot's way) puts Gemma3's norm gains (0 to 161 within
    one norm) into int8 weights: on the 270M that broke int16_w8 (KL 13.8)."""
    saved = norm.weight.detach().clone()
    norm.weight.zero_()
    return NormThen(norm, nn.Sequential(back, Gain(1.0 + saved.float())), saved)


def _maps(dim: int, channels: list[int], seed: int) -> tuple[Reflections, Reflections]:
    """y ↦ y·R and y ↦ y·Rᵀ (each reflection is its own inverse, so Rᵀ applies them in reverse order)."""
    gen = torch.Generator().manual_seed(seed)
    vs = torch.stack([_reflection(c, dim, gen) for c in channels])
    return Reflections(vs, channels), Reflections(vs.flip(0), channels[::-1])


@torch.no_grad()
def rotate(hf_model: nn.Module, channels: list[int], seed: int = 0) -> dict:
    """Rotate the residual stream of a transformers Gemma3 text model in place (r ↦ r·R, R = H_1…H_k, one reflection
    per channel in `channels`); returns what was done (for the manifest and `unrotate`). The model keeps its
    function."""
    fwd, back = _maps(hf_model.config.hidden_size, channels, seed)
    emb = hf_model.model.embed_tokens
    tied = hf_model.lm_head.weight is emb.weight
    if tied:  # the LM head keeps the unrotated table
        hf_model.lm_head.weight = nn.Parameter(emb.weight.detach().clone(), requires_grad=False)
    emb.weight = nn.Parameter(fwd(emb.weight.detach().float()).to(emb.weight.dtype), requires_grad=False)
    for layer in hf_model.model.layers:
        layer.input_layernorm = _read_back(layer.input_layernorm, back)
        layer.pre_feedforward_layernorm = _read_back(layer.pre_feedforward_layernorm, back)
        layer.post_attention_layernorm = NormThen(layer.post_attention_layernorm, fwd)
        layer.post_feedforward_layernorm = NormThen(layer.post_feedforward_layernorm, fwd)
    hf_model.model.norm = _read_back(hf_model.model.norm, back)
    hf_model.config.tie_word_embeddings = False
    return {"channels": channels, "seed": seed, "tied": tied}


def _plain(norm: nn.Module) -> nn.Module:
    """The Gemma3RMSNorm inside a NormThen, with its own weight back."""
    if not isinstance(norm, NormThen):
        return norm
    if norm.saved is not None:
        norm.norm.weight.copy_(norm.saved)
    return norm.norm


@torch.no_grad()
def unrotate(hf_model: nn.Module, done: dict) -> None:
    """Undo `rotate` in place, given what it returned (exporting must not change the caller's model). A tied table is
    the LM head's unrotated copy again (exact); an untied one is rotated back (float32 rounding)."""
    for layer in hf_model.model.layers:
        for name in ("input_layernorm", "pre_feedforward_layernorm", "post_attention_layernorm",
                     "post_feedforward_layernorm"):
            setattr(layer, name, _plain(getattr(layer, name)))
    hf_model.model.norm = _plain(hf_model.model.norm)
    emb = hf_model.model.embed_tokens
    if done["tied"]:
        emb.weight = hf_model.lm_head.weight
        hf_model.config.tie_word_embeddings = True
    else:
        _, back = _maps(hf_model.config.hidden_size, done["channels"], done["seed"])
        emb.weight = nn.Parameter(back(emb.weight.detach().float()).to(emb.weight.dtype), requires_grad=False)
