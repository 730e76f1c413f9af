"""Block-Hadamard rotations around Gemma3's fully-connected layers: same function, inputs and outputs int8 can hold.

An int8 activation has one scale per tensor. The inputs of q/k/v, gate/up and the LM head are RMSNorm outputs times
the norm's gain (Gemma3's gains reach 0–161 within one norm), and o_proj's and q/k's outputs have channels much wider
than the rest: a per-tensor step set by the widest channel rounds the others away. Rotating such a tensor by an
orthogonal H spreads each wide channel over all, and folding H into the layer's weights keeps the function
(QuaRot, Ashkboos et al. 2024, online Hadamard variant). H is block-diagonal Sylvester Hadamard (blocks of 128: its
entries are all ±1/√128, which int8 holds exactly) applied as one small FULLY_CONNECTED over the tensor reshaped to
rows of 128 — 16 K weights per site, not a dense d×d matrix.

| site                         | tensor rotated               | ops added                         | weights changed         |
|------------------------------|------------------------------|-----------------------------------|-------------------------|
| q/k/v, gate/up, LM head in   | pre-norm output × gain       | · H after the norm's gain         | columns · H             |
| o_proj out                   | post-attention norm's input  | norm at unit weight, · H, · gain  | o_proj rows H ·         |
| q/k out                      | q_norm / k_norm inputs       | same, per head (blocks of d/2)    | q/k rows H ·            |
| v out / o_proj in            | V (the cache) and o's input  | none (attention is linear in V)   | v rows H ·, o columns ·H |

RMSNorm is rotation invariant (rms(yH) = rms(y)), so a norm at unit weight followed by · H (H is its own inverse) and
then the gain gives what the norm gave. The down projection's input (gelu(gate)·up) is elementwise: not rotated.

Choose it (`--hadamard`) for variants with int8 activations on the fully-connected layers (a16_a8 recipes). Bundled
270M, int8 activations on q/k/v, o, gate/up and the LM head (90.7 % of the weights), 1,279 held-out tokens:
perplexity +18.1 % → +4.9 %, KL 0.169 → 0.046, top-1 80.1 → 88.7 %, fully compiled for SM8750 (README). int16_w8
gains less (KL 0.022 → 0.021, top-1 91.4 → 93.4 %, perplexity +2.2 → +2.6 %). Cost: 91 small FCs in decode (87 in
prefill) and their reshapes, 1,416 → 1,743 ops in decode.
`bench/int8_activation_bench.py` simulates it in PyTorch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quantlab.export.rotate import Gain, NormThen

BLOCK = 128


def _block(dim: int, block: int = BLOCK) -> int:
    """The largest power of two ≤ `block` dividing `dim` (128 for every Gemma3 width; smaller for tiny test models)."""
    b = 1
    while b * 2 <= block and dim % (b * 2) == 0:
        b *= 2
    return b


def hadamard(n: int) -> torch.Tensor:
    """Orthonormal Sylvester Hadamard matrix of order n (a power of two); symmetric, so its own inverse."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / n**0.5


def block_matrix(dim: int, block: int = BLOCK) -> torch.Tensor:
    """The dim×dim block-diagonal H that BlockHadamard(dim, block) applies, dense (float64; the folds apply it block
    by block instead); `block` caps the block (a head's width, so that no block crosses heads)."""
    b = _block(dim, block)
    return torch.block_diag(*[hadamard(b)] * (dim // b))


class BlockHadamard(nn.Module):
    """y ↦ y·H over the last dimension: rows of `block` values, one shared FULLY_CONNECTED with Hadamard weights."""

    def __init__(self, dim: int, block: int = BLOCK) -> None:
        super().__init__()
        b = _block(dim, block)
        self.block = b
        self.lin = nn.Linear(b, b, bias=False)
        self.lin.weight = nn.Parameter(hadamard(b).float(), requires_grad=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.lin(y.reshape(1, -1, self.block)).reshape(y.shape)


class _Undo:
    """What `hadamard_fcs` replaced, to put back exactly: parameters, modules, norm weights zeroed in place.

    The replaced weights that nothing else in the model holds wait on disk (`offload`), not in memory: at the 1B shape
    they are 3.2 GB (q/k/v/o, gate/up and the LM head's own copy) that the export would otherwise carry at its peak."""

    def __init__(self) -> None:
        self.params: list[tuple[nn.Module, str, nn.Parameter]] = []
        self.modules: list[tuple[nn.Module, str, nn.Module]] = []
        self.norms: list[tuple[nn.Module, torch.Tensor]] = []
        self.on_disk: dict[int, tuple[Path, tuple, np.dtype]] = {}  # id(param) -> its saved bytes
        self._dir: tempfile.TemporaryDirectory | None = None

    def set_weight(self, lin: nn.Module, w: torch.Tensor) -> None:
        self.params.append((lin, "weight", lin.weight))
        lin.weight = nn.Parameter(w.to(lin.weight.dtype), requires_grad=False)

    def set_module(self, parent: nn.Module, name: str, new: nn.Module) -> None:
        self.modules.append((parent, name, getattr(parent, name)))
        setattr(parent, name, new)

    def offload(self, model: nn.Module) -> None:
        """Write the replaced weights no longer in `model` to a temporary folder and free their memory."""
        live = {id(p) for p in model.parameters()}
        self._dir = tempfile.TemporaryDirectory(prefix="quantlab-hadamard-")
        for i, (_, _, old) in enumerate(self.params):
            if id(old) in live or id(old) in self.on_disk:
                continue  # still used (a tied embedding table): stays where it is
            path, values = Path(self._dir.name) / f"{i}.bin", old.data.contiguous().numpy()
            values.tofile(path)
            self.on_disk[id(old)] = (path, values.shape, values.dtype)
            old.data = torch.empty(0, dtype=old.dtype)

    def restore(self) -> None:
        for norm, w in reversed(self.norms):
            norm.weight.copy_(w)
        for parent, name, old in reversed(self.modules):
            setattr(parent, name, old)
        for lin, name, old in reversed(self.params):
            if id(old) in self.on_disk:
                path, shape, dtype = self.on_disk.pop(id(old))
                old.data = torch.from_numpy(np.fromfile(path, dtype=dtype).reshape(shape))
            setattr(lin, name, old)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def _core(norm: nn.Module) -> nn.Module:
    return norm.norm if isinstance(norm, NormThen) else norm


def _after(norm: nn.Module) -> list[nn.Module]:
    return [norm.after] if isinstance(norm, NormThen) else []


def _rotate_output(parent: nn.Module, name: str, dim: int, undo: _Undo, block: int = BLOCK) -> None:
    """The norm `parent.name` reads a rotated input: unit weight, then · H, then its own gain, then what followed."""
    norm = getattr(parent, name)
    core = _core(norm)
    saved = core.weight.detach().clone()
    undo.norms.append((core, saved))
    core.weight.zero_()
    undo.set_module(parent, name, NormThen(core, nn.Sequential(BlockHadamard(dim, block), Gain(1.0 + saved.float()),
                                                               *_after(norm)), saved))


def _rotate_input(parent: nn.Module, name: str, dim: int, undo: _Undo) -> None:
    """The norm `parent.name`'s output (after its gain) is rotated by H before the layers that read it."""
    norm = getattr(parent, name)
    undo.set_module(parent, name, NormThen(_core(norm), nn.Sequential(*_after(norm), BlockHadamard(dim)),
                                           getattr(norm, "saved", None)))


def _fold(lin: nn.Linear, undo: _Undo, rows: int | None = None, cols: int | None = None) -> None:
    """lin.weight ← H_rows · W · H_cols, each H block-diagonal Hadamard with blocks of the size given (float64, so the
    fold adds no float32 error of its own beyond the final cast). Applied block by block, in pieces of ~16 M entries:
    no dense d×d product, no float64 copy of a 1B LM head."""
    w = lin.weight.detach()
    out = torch.empty_like(w)
    h_rows = hadamard(rows) if rows else None
    h_cols = hadamard(cols) if cols else None
    step = max(rows or 1, (1 << 24) // w.shape[1] // (rows or 1) * (rows or 1))  # whole row blocks per piece
    for i in range(0, w.shape[0], step):
        piece = w[i : i + step].double()
        n = piece.shape[0]
        if h_rows is not None:
            piece = (h_rows @ piece.reshape(n // rows, rows, -1)).reshape(n, -1)
        if h_cols is not None:
            piece = (piece.reshape(n, -1, cols) @ h_cols).reshape(n, -1)
        out[i : i + step] = piece
    undo.set_weight(lin, out)


@torch.no_grad()
def hadamard_fcs(hf_model: nn.Module) -> _Undo:
    """Put block-Hadamard rotations around every fully-connected layer but the down projection of a transformers
    Gemma3 text model, in place (after `rotate`, if any); returns the handle `unhadamard` takes. Same function."""
    cfg = hf_model.config
    d_model, d_head = cfg.hidden_size, cfg.head_dim
    h_model = _block(d_model)  # block sizes of each block-diagonal H
    per_head = _block(d_head)  # V is rotated per head (attention mixes positions, not heads): no block crosses heads
    h_q = _block(cfg.num_attention_heads * d_head, per_head)
    h_kv = _block(cfg.num_key_value_heads * d_head, per_head)
    # q/k: blocks of at most half a head. Behind k_norm with one KV head the decode tensor is [1, 1, 1, d], and
    # litert-torch 0.10 fails on a fully-connected op right behind the norm composite at that shape or at [1, 1, d]
    # ("'tfl.batch_matmul' op found invalid output rank, expected 3 but got 4"); as [1, 2, d/2] it converts.
    head_block = _block(d_head, min(BLOCK, d_head // 2))
    h_qk = _block(cfg.num_attention_heads * d_head, head_block)
    h_kk = _block(cfg.num_key_value_heads * d_head, head_block)
    undo = _Undo()
    for layer in hf_model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        _rotate_input(layer, "input_layernorm", d_model, undo)
        _rotate_input(layer, "pre_feedforward_layernorm", d_model, undo)
        _fold(attn.q_proj, undo, rows=h_qk, cols=h_model)
        _fold(attn.k_proj, undo, rows=h_kk, cols=h_model)
        _fold(attn.v_proj, undo, rows=h_kv, cols=h_model)
        _fold(attn.o_proj, undo, rows=h_model, cols=h_q)
        _fold(mlp.gate_proj, undo, cols=h_model)
        _fold(mlp.up_proj, undo, cols=h_model)
        _rotate_output(attn, "q_norm", d_head, undo, block=head_block)
        _rotate_output(attn, "k_norm", d_head, undo, block=head_block)
        _rotate_output(layer, "post_attention_layernorm", d_model, undo)
    _rotate_input(hf_model.model, "norm", d_model, undo)
    _fold(hf_model.lm_head, undo, cols=h_model)  # a new Parameter: a tied embedding table keeps its own
    undo.offload(hf_model)
    return undo


@torch.no_grad()
def unhadamard(undo: _Undo) -> None:
    """Undo `hadamard_fcs` exactly (the original parameters and modules are put back)."""
    undo.restore()
