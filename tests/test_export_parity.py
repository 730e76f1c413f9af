"""The acceptance test of the export: the LiteRT artifacts agree with the PyTorch (transformers) reference.

Tiny random Gemma3 (6 layers, layer 5 global, 16-token window), 8-token prefill, 64-slot cache, real litert-torch
conversion and real LiteRT interpreter. Tolerances: logits within 1e-3 absolute (they span about ±20; float32
reordering gives ~2e-5), greedy tokens identical, perplexity within 0.1 %.
"""

from __future__ import annotations

import numpy as np
import torch

from quantlab.evaluate.evaluator import evaluate
from quantlab import layout
from quantlab.runtime.session import ArtifactSet, generate
from tests.conftest import TINY_CACHE, TINY_PREFILL

LOGIT_ATOL = 1e-3


def test_signatures_and_names(tiny_artifacts, tiny_model):
    arts = ArtifactSet(tiny_artifacts)
    n = tiny_model.config.num_hidden_layers
    assert sorted(arts.main.signatures) == sorted([f"prefill_{TINY_PREFILL}", "decode"])
    for sig, t in ((f"prefill_{TINY_PREFILL}", TINY_PREFILL), ("decode", 1)):
        ins, outs = arts.main.inputs[sig], arts.main.outputs[sig]
        assert set(layout.MAIN_INPUTS) <= set(ins)
        assert {f"kv_cache_k_{i}" for i in range(n)} | {f"kv_cache_v_{i}" for i in range(n)} <= set(ins)
        assert ins["mask_local"].shape == (1, 1, t, TINY_CACHE + t)
        assert ins["pos_emb_local_cos"].shape == (1, t, 1, tiny_model.config.head_dim)
        assert ins["kv_cache_k_0"].shape == (1, 1, TINY_CACHE, tiny_model.config.head_dim)
        assert outs[f"kv_slice_v_{n - 1}"].shape == (1, 1, t, tiny_model.config.head_dim)
    # Only decode returns logits, as one `logits` tensor; prefill returns K/V slices alone (LiteRT-LM's NPU layout).
    outs = arts.main.outputs["decode"]
    assert outs["logits"].shape == (1, 1, tiny_model.config.vocab_size)
    assert not any(n.startswith("logits") for n in arts.main.outputs[f"prefill_{TINY_PREFILL}"])
    # The embedder's signatures and names are LiteRT-LM's too.
    assert sorted(arts.embedder.signatures) == sorted([f"prefill_embedder_{TINY_PREFILL}", "decode_embedder"])
    assert set(arts.embedder.inputs["decode_embedder"]) == {"token_ids"}


def test_chunked_prefill_then_decode_matches_torch(tiny_artifacts, tiny_model, english_text):
    # Prefill n-1 tokens in chunks (the last one padded), then decode the n-th: its logits depend on every K/V the
    # prefill wrote, so they match the reference only if those are right. n = 45 crosses the 16-token local window.
    arts = ArtifactSet(tiny_artifacts)
    ids = arts.encode(english_text)[:45]
    with torch.no_grad():
        ref = tiny_model.model(torch.tensor([ids])).logits[0].numpy()
    for n in (2, TINY_PREFILL + 1, 17, 45):
        got = arts.session().prefill(ids[:n])
        diff = np.abs(got - ref[n - 1])
        assert diff.max() < LOGIT_ATOL, f"n={n}: max |logit diff| {diff.max():.3g} at token {diff.argmax()}"
        assert got.argmax() == ref[n - 1].argmax()


def test_decode_logits_at_every_position_match_torch(tiny_artifacts, tiny_model, english_text):
    arts = ArtifactSet(tiny_artifacts)
    ids = arts.encode(english_text)[:45]
    with torch.no_grad():
        ref = tiny_model.model(torch.tensor([ids])).logits[0].numpy()
    got = np.concatenate(list(arts.session().decode_chunks(ids, TINY_PREFILL)))
    diff = np.abs(got - ref)
    worst = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() < LOGIT_ATOL, f"max |logit diff| {diff.max():.3g} at position {worst[0]}, token {worst[1]}"
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_greedy_generation_matches_torch(tiny_artifacts, tiny_model):
    arts = ArtifactSet(tiny_artifacts)
    for prompt in ("The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away, there"):
        ids = arts.encode(prompt)
        with torch.no_grad():
            ref = tiny_model.model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                                            eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
        got = generate(arts, prompt, max_new_tokens=24)
        if got.stop_reason == "eos":  # transformers ran on past EOS; compare up to it
            ref = ref[: len(got.tokens)]
        assert got.tokens == ref, f"prompt {prompt!r}: first difference at {next(i for i, (a, b) in enumerate(zip(got.tokens, ref)) if a != b)}"


def test_perplexity_matches_torch(tiny_artifacts, english_text):
    # 150 tokens → 3 windows of the 64-slot cache, each restarting from BOS.
    res = evaluate(tiny_artifacts, english_text, reference="torch", max_tokens=150, decode_steps=4, quiet=True)
    assert res.windows == 3 and res.random_weights
    assert res.top1_agreement == 1.0
    assert res.max_abs_logit_diff < LOGIT_ATOL
    assert res.kl < 1e-6
    # The same windows scored by the PyTorch reference alone:
    from quantlab.evaluate.evaluator import score
    from quantlab.evaluate.scorers import TorchScorer
    from quantlab.evaluate.windows import windows
    from quantlab.models import load_model

    arts = ArtifactSet(tiny_artifacts)
    wins = windows(arts.encode(english_text)[1:151], arts.model_info.bos_token_id, TINY_CACHE)
    torch_only, _ = score(TorchScorer(load_model("tiny-random").model, TINY_PREFILL), None, wins, quiet=True)
    assert abs(res.perplexity / torch_only["perplexity"] - 1) < 1e-3
    assert res.speed["decode_tokens_per_s"] > 0 and res.peak_rss_mb > 0


def test_sampling_is_seeded_and_respects_top_k(tiny_artifacts):
    from quantlab.runtime.sampling import SamplerConfig

    arts = ArtifactSet(tiny_artifacts)
    cfg = SamplerConfig(temperature=1.0, top_k=5, seed=7)
    a = generate(arts, "Hello", 8, cfg)
    b = generate(arts, "Hello", 8, cfg)
    assert a.tokens == b.tokens
    # With top_k=1 sampling is greedy whatever the temperature.
    assert generate(arts, "Hello", 8, SamplerConfig(temperature=2.0, top_k=1)).tokens == generate(arts, "Hello", 8).tokens


def test_calibration_decode_samples_are_the_decodes_they_stand_for(tiny_artifacts, tiny_model, english_text):
    # Calibration samples decode inside each prefilled chunk (decode alone has the LM head, whose range needs many
    # positions). There the caches also hold the chunk's later tokens; the mask must hide them, so each sample's
    # logits must be the reference's at its position (same tolerance as above). Stride 3 over 8-token chunks: samples
    # at s+2, s+5, then the boundary sample at s+8; and BOS (position 0), which scoring decodes too, at any stride.
    from quantlab.calibration.capture import capture_window

    arts = ArtifactSet(tiny_artifacts)
    ids = arts.encode(english_text)[:45]
    with torch.no_grad():
        ref = tiny_model.model(torch.tensor([ids])).logits[0].numpy()
    want = [0] + [q for s in range(0, len(ids), TINY_PREFILL)
                  for q in (s + 2, s + 5, s + TINY_PREFILL) if q < min(s + TINY_PREFILL + 1, len(ids))]
    feeds = [feed for sig, feed in capture_window(arts, ids, decode_stride=3) if sig == layout.DECODE]
    assert len(feeds) == len(want) == 17
    for q, feed in zip(want, feeds):
        out = arts.main.run(layout.DECODE, feed)
        got = out[layout.LOGITS][0, 0]
        diff = np.abs(got - ref[q])
        assert diff.max() < LOGIT_ATOL, f"position {q}: max |logit diff| {diff.max():.3g} at token {diff.argmax()}"
