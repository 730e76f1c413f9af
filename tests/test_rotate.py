"""Residual-stream rotation (quantlab/export/rotate.py) on the tiny random Gemma3 (random weights) given a massive
channel like the real 270M's: same function, narrower stream, undone exactly."""

from __future__ import annotations

import copy

import torch

from quantlab import manifest
from quantlab.export.rotate import massive_channels, residual_channel_maxima, rotate, unrotate

CHANNEL = 11


def _with_massive_channel(tiny_model):
    """A copy whose post-attention norms write channel CHANNEL ~20× larger than any other (Gemma3-270M's 163: ~100×;
    larger here only magnifies float32 rounding, which both models have)."""
    model = copy.deepcopy(tiny_model.model)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.post_attention_layernorm.weight[CHANNEL] = 50.0
    return model


def _residual_max(model, ids) -> float:
    with torch.no_grad():
        out = model(ids, use_cache=False, output_hidden_states=True)
    return max(float(h.abs().max()) for h in out.hidden_states[:-1])


def test_rotation_keeps_the_function_narrows_the_stream_and_undoes(tiny_model):
    model = _with_massive_channel(tiny_model)
    ids = torch.randint(3, 5000, (1, 40))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = model(ids).logits
        maxima = residual_channel_maxima(model, [ids[0].tolist()])
    assert massive_channels(maxima, 1) == [CHANNEL]
    wide = _residual_max(model, ids)
    done = rotate(model, [CHANNEL])
    with torch.no_grad():
        out = model(ids).logits
    # float32 reordering only: the worst logit differs by at most 1e-3 of the logit range (measured: 3e-6 to 2e-5)
    worst = float((out - ref).abs().max())
    assert worst <= 1e-3 * float(ref.abs().max()), f"worst |logit diff| {worst}"
    narrow = _residual_max(model, ids)
    assert narrow < wide / 4, f"residual max {wide:.1f} → {narrow:.1f}"  # hidden 64: a channel spreads over 8× less
    unrotate(model, done)
    after = model.state_dict()
    assert set(after) == set(before)
    bad = [k for k in before if not torch.equal(before[k], after[k])]
    assert not bad, f"not restored exactly: {bad[:3]}"
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied again


def test_export_leaves_the_callers_model_as_it_was(tiny_model, tiny_artifacts):
    """The session's tiny export (rotate=1 by default) rotated and unrotated tiny_model: still tied, plain norms."""
    import json

    m = tiny_model.model
    assert m.lm_head.weight is m.model.embed_tokens.weight
    assert type(m.model.layers[0].input_layernorm).__name__ == "Gemma3RMSNorm"
    record = manifest.load(tiny_artifacts).export.rotation
    assert record["channels"] and len(record["channels"]) == 1
