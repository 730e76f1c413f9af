"""Host-side masks and RoPE against transformers' rules."""

from __future__ import annotations

import numpy as np
import torch

from quantlab.runtime.host_inputs import HostParams, host_params_from_model


def _params(window=4, cache=10):
    return HostParams(cache_len=cache, prefill_len=3, sliding_window=window,
                      inv_freq_global=(1.0, 0.1), inv_freq_local=(1.0, 0.5))


def test_masks_follow_causal_and_window_rules():
    hp = _params()
    g, l = hp.masks(start=5, t=3)
    assert g.shape == l.shape == (1, 1, 3, 13)
    vis_g, vis_l = g[0, 0] == 0, l[0, 0] == 0
    # Row 0 is position 5: cache slots 0-4 written, slots 5-9 not; new token 0 (itself) visible, 1-2 not.
    assert vis_g[0].tolist() == [True] * 5 + [False] * 5 + [True, False, False]
    # Local window 4 at position 5 sees positions 2..5 only.
    assert vis_l[0].tolist() == [False, False, True, True, True] + [False] * 5 + [True, False, False]
    # Row 2 (position 7) sees positions 4..7: cache slot 4 and new tokens 0..2.
    assert vis_l[2].tolist() == [False] * 4 + [True] + [False] * 5 + [True, True, True]
    assert set(np.unique(g)) == {0.0, hp.mask_value}


def test_rope_matches_transformers(tiny_model):
    hf = tiny_model.model
    hp = host_params_from_model(hf, 64, 8)
    pos = np.arange(37, 45)
    for local, layer_type in ((False, "full_attention"), (True, "sliding_attention")):
        cos, sin = hp.rope(pos, local=local)
        x = torch.zeros(1, len(pos), hf.config.head_dim)
        rc, rs = hf.model.rotary_emb(x, torch.tensor(pos)[None], layer_type)
        assert cos.shape == (1, len(pos), 1, hf.config.head_dim)  # LiteRT-LM's [1, T, 1, D]
        np.testing.assert_allclose(cos[:, :, 0], rc.numpy(), atol=1e-5)
        np.testing.assert_allclose(sin[:, :, 0], rs.numpy(), atol=1e-5)
