"""Model sources: the random configs and the one-line errors for what is not a Gemma3 text model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quantlab.errors import UserError
from quantlab.models import load_model
from quantlab.models.random_weights import random_config, SHAPES


def test_tiny_random_is_marked_and_deterministic(tiny_model):
    assert tiny_model.random_weights
    assert "random weights" in tiny_model.describe()
    again = load_model("tiny-random")
    a = tiny_model.model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    b = again.model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    np.testing.assert_array_equal(a, b)


def test_layer_pattern_every_sixth_global():
    cfg = random_config(SHAPES["gemma3-1b-random"])
    globals_ = [i for i, t in enumerate(cfg.layer_types) if t == "full_attention"]
    assert globals_ == [5, 11, 17, 23]
    assert cfg.rope_parameters["full_attention"]["rope_theta"] == 1e6
    assert cfg.rope_parameters["sliding_attention"]["rope_theta"] == 1e4
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (1152, 26, 6912)


def test_missing_path_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(str(tmp_path / "nope"))


def test_non_gemma3_folder_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(UserError, match="'llama'.*accepts a Gemma3 text model"):
        load_model(str(tmp_path))


def test_multimodal_gemma3_folder_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3"}))
    with pytest.raises(UserError, match="multimodal"):
        load_model(str(tmp_path))


def test_corrupt_gguf_is_rejected(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 13)
    with pytest.raises(UserError, match="not a readable GGUF"):
        load_model(str(bad))


def test_gguf_of_other_architecture_is_rejected(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "llama.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UserError, match="holds a 'llama' model"):
        load_model(str(path))
