"""`.litertlm` bundles run by Google's LiteRT-LM (litert-lm-api, its NPU executor on this CPU) against quantlab's own
runtime, on the tiny random Gemma3 with Gemma3's 512-token window (what LiteRT-LM's executor assumes).

Tolerances (per-token log-probabilities, nats): fp32 1e-3 (float32 rounding differences between the two runtimes;
measured ≤ 6e-4); int16_w8 0.02 (the two runtimes quantize the same float inputs, and score through different call
sequences: measured ≤ 0.011).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quantlab.errors import UserError
from quantlab.evaluate.metrics import log_softmax
from quantlab.runtime.session import ArtifactSet, generate

PROMPTS = [  # 31, 21 and 5 tokens with BOS: 4, 3 and 1 prefill chunks of 8
    "The history of the city goes back to the Roman period, when a small fort was built on the hill above the river "
    "crossing to guard the road.",
    "Photosynthesis converts light energy into chemical energy: plants take in carbon dioxide and water and release "
    "oxygen.",
    "Once upon a time",
]
TARGET = " and then the story went on for a while, as stories do."
TOL = {"fp32": 1e-3, "int16_w8": 0.02}


@pytest.fixture(scope="session")
def bundled(lab):
    """The session's tiny lab (tests/conftest.py) bundled its fp32 and int16_w8 mains."""
    return lab, {v: lab / f"tiny-random-w512_{v}.litertlm" for v in TOL}


def _quantlab_scores(arts: ArtifactSet, prompt: str, target: str) -> list[float]:
    sess = arts.session()
    logits = sess.prefill(arts.encode(prompt))
    tgt = arts.tokenizer.encode(target)
    out = []
    for k, tok in enumerate(tgt):
        out.append(float(log_softmax(logits)[tok]))
        if k + 1 < len(tgt):
            logits = sess.decode(tok)
    return out


@pytest.mark.parametrize("variant", list(TOL))
def test_bundle_runs_in_litert_lm_like_quantlabs_runtime(bundled, variant):
    from quantlab.runtime.litert_lm import LiteRTLMBundle

    folder, paths = bundled
    arts = ArtifactSet(folder, variant)
    engine = LiteRTLMBundle(paths[variant], arts.host.cache_len)
    try:
        for prompt in PROMPTS:
            ours = generate(arts, prompt, 12)
            theirs = engine.generate(prompt, 12)
            assert theirs == arts.tokenizer.decode(ours.tokens, skip_special_tokens=False), prompt
            got = engine.score(prompt, TARGET).token_scores
            want = _quantlab_scores(arts, prompt, TARGET)
            assert len(got) == len(want)
            worst = int(np.argmax(np.abs(np.subtract(got, want))))
            assert abs(got[worst] - want[worst]) <= TOL[variant], (prompt, worst, got[worst], want[worst])
    finally:
        engine.close()


def test_litert_lm_perplexity_matches_quantlabs(bundled):
    from quantlab.evaluate.evaluator import evaluate
    from quantlab.evaluate.litert_lm_eval import evaluate_litert_lm
    from quantlab.texts import default_eval_text

    folder, _ = bundled
    theirs = evaluate_litert_lm(folder, default_eval_text(), "int16_w8", max_tokens=126, sample_prompt="Once upon")
    ours = evaluate(folder, default_eval_text(), "int16_w8", None, 126, decode_steps=2, quiet=True)
    assert theirs.tokens_scored == ours.tokens_scored == 126 and theirs.windows == 2
    # mean per-token difference within the tolerance above
    assert abs(np.log(theirs.perplexity) - np.log(ours.perplexity)) <= TOL["int16_w8"]
    assert theirs.sample["text"] and [b["from"] for b in theirs.by_position] == [0]


def test_bundle_sections_and_peek(bundled):
    folder, paths = bundled
    exe = Path(sys.executable).with_name("litert-lm-peek")  # litert-lm-builder's own inspector
    peek = subprocess.run([str(exe), "--litertlm_file", str(paths["int16_w8"])], capture_output=True, text=True)
    text = peek.stdout + peek.stderr
    for section in ("LlmMetadataProto", "tf_lite_prefill_decode", "tf_lite_embedder", "tf_lite_aux", "HF_Tokenizer"):
        assert section in text, text[-2000:]


def test_a_model_without_gemma3s_window_is_refused(quantized):
    from quantlab.bundle.builder import build_bundle

    folder, _ = quantized  # tiny-random: a 16-token window
    with pytest.raises(UserError, match="512"):
        build_bundle(folder, "int16_w8")
