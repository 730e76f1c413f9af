"""The maths of the measurements against hand-computed references: perplexity, KL, top-1 agreement, buckets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantlab.evaluate.metrics import Accumulator, log_softmax


def test_log_softmax_is_exact_and_stable():
    x = np.array([[1000.0, 1001.0, 1002.0]])
    ref = np.array([1, 2, 3.0]) - math.log(math.e + math.e**2 + math.e**3)
    assert np.allclose(log_softmax(x)[0], ref, atol=1e-12)


def test_perplexity_kl_and_top1_against_hand_computed_values():
    # Two positions over a 3-token vocabulary.
    test = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]))
    ref = np.log(np.array([[0.25, 0.5, 0.25], [0.1, 0.2, 0.7]]))
    targets = np.array([0, 2])
    acc = Accumulator()
    acc.add(test, targets, np.array([0, 1]), ref)
    s = acc.summary()
    # perplexity = exp(mean NLL) = exp(-(ln 0.5 + ln 0.7) / 2)
    assert s["perplexity"] == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.7)) / 2), rel=1e-12)
    # KL(ref || test) at position 0 = 0.25 ln(0.25/0.5) + 0.5 ln(0.5/0.25) + 0.25 ln(1) = 0.25 ln 2; position 1: 0
    assert s["kl"] == pytest.approx((0.25 * math.log(2) + 0.0) / 2, rel=1e-12)
    # argmax: position 0 test 0 vs ref 1 (disagree), position 1 both 2 (agree)
    assert s["top1_agreement"] == 0.5
    assert s["max_abs_logit_diff"] == pytest.approx(math.log(2), rel=1e-12)
    assert s["tokens_scored"] == 2


def test_by_position_buckets_of_128():
    acc = Accumulator()
    logits = np.log(np.full((300, 4), 0.25))
    acc.add(logits, np.zeros(300, int), np.arange(300), logits)
    rows = acc.summary()["by_position"]
    assert [(r["from"], r["to"]) for r in rows] == [(0, 127), (128, 255), (256, 383)]
    assert all(r["perplexity"] == pytest.approx(4.0) and r["kl"] == pytest.approx(0.0, abs=1e-12) for r in rows)


def test_without_reference_there_is_no_kl():
    acc = Accumulator()
    acc.add(np.log(np.array([[0.5, 0.5]])), np.array([1]), np.array([0]), None)
    s = acc.summary()
    assert s["perplexity"] == pytest.approx(2.0) and "kl" not in s


def test_torch_log_softmax_matches_the_float64_numpy_formula_on_gemma_sized_logits():
    # The accumulator's torch float64 log-softmax and KL against the plain numpy formula it replaced, on a 4 × 262,144
    # chunk (Gemma3's vocabulary) with logits of the 270M's range; tolerance 1e-12 absolute (both are float64).
    rng = np.random.default_rng(0)
    test = (rng.standard_normal((4, 262144)) * 4).astype(np.float32)
    ref = test + (rng.standard_normal(test.shape) * 0.5).astype(np.float32)

    def np_log_softmax(x):
        x = x.astype(np.float64)
        m = x.max(-1, keepdims=True)
        return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))

    lp, lr = np_log_softmax(test), np_log_softmax(ref)
    targets = np.array([5, 70000, 262143, 0])
    acc = Accumulator()
    acc.add(test, targets, np.arange(4), ref)
    assert np.abs(log_softmax(test) - lp).max() < 1e-12
    assert np.allclose(acc.nll, -lp[np.arange(4), targets], rtol=0, atol=1e-12)
    assert np.allclose(acc.kl, (np.exp(lr) * (lr - lp)).sum(-1), rtol=0, atol=1e-12)
    assert min(acc.kl) > 0.05  # the perturbation is large enough that a wrong KL cannot pass by being ~0
