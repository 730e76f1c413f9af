"""Parity on the real Gemma3-270M (slow: minutes). Run with `scripts/test.sh -m slow`.

Tolerances: greedy 32-token continuations identical to transformers for 3 prompts; perplexity over >= 2,000 tokens of
English text (Python's bundled documentation) within 0.5 % of PyTorch's; top-1 agreement >= 99 %.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

PROMPTS = ("The capital of France is", "Water boils at a temperature of", "def fibonacci(n):\n")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from quantlab.export import ExportConfig, export_model
    from quantlab.models import load_model

    loaded = load_model("gemma3-270m")
    out = tmp_path_factory.mktemp("g270")
    export_model(loaded, out, ExportConfig())
    return loaded, out


def test_greedy_matches_torch(real):
    from quantlab.runtime.session import ArtifactSet, generate

    loaded, out = real
    arts = ArtifactSet(out)
    for prompt in PROMPTS:
        ids = arts.encode(prompt)
        with torch.no_grad():
            ref = loaded.model.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)[0, len(ids):]
        got = generate(arts, prompt, 32)
        assert got.tokens == ref.tolist()[: len(got.tokens)] and len(got.tokens) >= 1


def test_perplexity_within_half_percent(real, english_text):
    from quantlab.evaluate.evaluator import evaluate, score
    from quantlab.evaluate.scorers import TorchScorer
    from quantlab.evaluate.windows import windows
    from quantlab.runtime.session import ArtifactSet
    import pydoc_data.topics as topics

    loaded, out = real
    text = "\n\n".join(topics.topics[k] for k in ("assignment", "class", "compound", "exceptions"))
    res = evaluate(out, text, reference="torch", max_tokens=2400, quiet=True)
    arts = ArtifactSet(out)
    wins = windows(arts.encode(text)[1:2401], arts.model_info.bos_token_id, arts.host.cache_len)
    ref, _ = score(TorchScorer(loaded.model, arts.host.prefill_len), None, wins, quiet=True)
    assert res.tokens_scored >= 2000
    assert abs(res.perplexity / ref["perplexity"] - 1) < 0.005
    assert res.top1_agreement >= 0.99
