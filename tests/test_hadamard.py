"""Block-Hadamard rotations around the fully-connected layers (quantlab/export/hadamard.py) on the tiny random
Gemma3 (random weights): same function in PyTorch and in the exported FP32 main, narrower FC activations, undone
exactly, and the rotations stay at the base width in every mixed recipe."""

from __future__ import annotations

import json

import numpy as np
import torch

from quantlab.export.hadamard import BlockHadamard, block_matrix, hadamard_fcs, unhadamard
from quantlab.export.rotate import rotate, unrotate

from tests.test_rotate import CHANNEL, _with_massive_channel


def test_block_hadamard_is_orthogonal_and_its_own_inverse():
    h = block_matrix(640)
    assert torch.allclose(h @ h, torch.eye(640, dtype=h.dtype), atol=1e-12)
    x = torch.randn(3, 5, 640)
    bh = BlockHadamard(640)
    assert bh.block == 128
    # float32 matmul against the float64 dense form: within 1e-5 of |x|'s scale
    assert float((bh(x) - (x.double() @ h).float()).abs().max()) < 1e-5


def _fc_input_peak_ratio(model, ids) -> float:
    """max |x| / rms(x) of the q_proj inputs, worst layer: what a per-tensor int8 scale pays for."""
    worst = []
    hooks = [layer.self_attn.q_proj.register_forward_pre_hook(
        lambda _m, a: worst.append(float(a[0].abs().max() / a[0].pow(2).mean().sqrt()))) for layer in model.model.layers]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    return max(worst)


def test_hadamard_keeps_the_function_narrows_fc_inputs_and_undoes(tiny_model):
    model = _with_massive_channel(tiny_model)
    with torch.no_grad():  # one wide gain channel per pre-norm, like Gemma3's (gains up to 161 in the 270M)
        for layer in model.model.layers:
            layer.input_layernorm.weight[3] = 40.0
    ids = torch.randint(3, 5000, (1, 40))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = model(ids).logits
    peak = _fc_input_peak_ratio(model, ids)
    done = rotate(model, [CHANNEL])
    undo = hadamard_fcs(model)
    with torch.no_grad():
        out = model(ids).logits
    # float32 reordering only: the worst logit differs by at most 1e-3 of the logit range (measured: ~1e-5)
    worst = float((out - ref).abs().max())
    assert worst <= 1e-3 * float(ref.abs().max()), f"worst |logit diff| {worst}"
    spread = _fc_input_peak_ratio(model, ids)
    assert spread < peak / 2, f"q_proj input peak/rms {peak:.1f} → {spread:.1f}"  # hidden 64: blocks of 64
    # the replaced weights wait on disk, not in memory (the LM head's copy too: rotate untied it)
    assert len(undo.on_disk) == len(undo.params) and all(old.numel() == 0 for _, _, old in undo.params)
    unhadamard(undo)
    unrotate(model, done)
    after = model.state_dict()
    assert set(after) == set(before)
    bad = [k for k in before if not torch.equal(before[k], after[k])]
    assert not bad, f"not restored exactly: {bad[:3]}"
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_hadamard_fcs_stay_at_the_base_width_in_mixed_recipes():
    from quantlab.quantize.groups import HADAMARD, build_recipe

    recipe = build_recipe(16, {"attn_qkv": 8, "attn_o": 8, "mlp_in": 8, "lm_head": 8})
    last = recipe[-1]
    assert last["regex"] == HADAMARD and last["operation"] == "FULLY_CONNECTED"
    assert last["op_config"]["activation_tensor_config"]["num_bits"] == 16


def test_export_with_hadamard_matches_torch_and_keeps_rotations_int16(tiny_model, english_text, tmp_path):
    """The FP32 main exported with `hadamard=True` decodes what transformers computes (logits within 1e-3, as the
    plain export's parity test), the caller's model is untouched, and an a16_a8 main holds its rotations at int16."""
    from quantlab.quantize.groups import HADAMARD, build_recipe
    from quantlab.calibration.capture import CapturePlan
    from quantlab.calibration.ranges import calibrate
    from quantlab.check.graph import read_ops
    from quantlab.export import ExportConfig, export_model
    from quantlab.quantize.quantizer import quantize
    from quantlab.runtime.session import ArtifactSet
    from tests.conftest import TINY_CACHE, TINY_PREFILL

    before = {k: v.clone() for k, v in tiny_model.model.state_dict().items()}
    data = export_model(tiny_model, tmp_path, ExportConfig(prefill_len=TINY_PREFILL, cache_len=TINY_CACHE,
                                                           hadamard=True))
    assert data.export.hadamard == {"block": 128}
    after = tiny_model.model.state_dict()
    assert not [k for k in before if not torch.equal(before[k], after[k])]
    arts = ArtifactSet(tmp_path)
    ids = arts.encode(english_text)[:30]
    with torch.no_grad():
        ref = tiny_model.model(torch.tensor([ids])).logits[0].numpy()
    got = np.concatenate(list(arts.session().decode_chunks(ids, TINY_PREFILL)))
    diff = np.abs(got - ref[: len(got)])
    assert diff.max() < 1e-3, f"max |logit diff| {diff.max():.3g} at {np.unravel_index(diff.argmax(), diff.shape)}"

    calibrate(tmp_path, [english_text], CapturePlan(windows=1), quiet=True)
    recipe = tmp_path / "a16_a8.json"
    recipe.write_text(json.dumps(build_recipe(16, {"attn_qkv": 8, "attn_o": 8, "mlp_in": 8, "lm_head": 8})))
    path = tmp_path / quantize(tmp_path, str(recipe), quiet=True).path
    fcs = [o for o in read_ops(path) if o.name == "FULLY_CONNECTED" and len(o.inputs) > 1]
    rot = [o for o in fcs if any(HADAMARD in t.name for t in o.outputs)]
    assert rot and all(o.inputs[0].dtype == "INT16" for o in rot), [o.inputs[0].dtype for o in rot]
    assert any(o.inputs[0].dtype == "INT8" for o in fcs)


def test_hadamard_keeps_a_tied_embedding_table_in_memory(tiny_model):
    """Without the residual rotation the LM head is the embedding table: its fold makes a new Parameter and the
    table (which the embedder export still reads) stays in memory, untouched; the rest goes to disk and comes back."""
    import copy

    model = copy.deepcopy(tiny_model.model)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    table = model.model.embed_tokens.weight.detach().clone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    undo = hadamard_fcs(model)
    assert torch.equal(model.model.embed_tokens.weight, table)
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert len(undo.on_disk) == len(undo.params) - 1  # all but the table
    unhadamard(undo)
    after = model.state_dict()
    assert not [k for k in before if not torch.equal(before[k], after[k])]
    assert model.lm_head.weight is model.model.embed_tokens.weight
