"""Op groups, SmoothQuant scale migration, calibration range merging: on the tiny random Gemma3 (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantlab.quantize.groups import FC_GROUPS, build_recipe, int8_fc_share, weight_share


def test_weight_share_covers_every_fc_and_lm_head_dominates(tiny_artifacts):
    from quantlab.quantize.groups import _fc_ops

    path = tiny_artifacts / "tiny-random_main_fp32.tflite"
    share = weight_share(path)
    assert set(share) == set(FC_GROUPS)
    # every FC is in a group but the rotations' own (the residual stream's Reflections, --hadamard's BlockHadamard;
    # those inside the attention count with attn_qkv)
    fcs = _fc_ops(path)
    rotations = sum(n for o, n in fcs if any(k in o.outputs[0].name for k in ("Reflections", "BlockHadamard"))
                    and "NpuAttention_attn" not in o.outputs[0].name)
    assert sum(share.values()) + rotations / sum(n for _, n in fcs) == pytest.approx(1.0, abs=1e-6)
    # tiny: LM head 262,144 x 64 against 6 layers of 64-wide projections
    assert max(share, key=share.get) == "lm_head" and share["lm_head"] > 0.9
    assert all(v > 0 for v in share.values())  # every group's regex matched its ops


def test_recipe_groups_land_on_the_ops_they_name(quantized):
    """int8 on attn_o only: exactly o_proj's weight share takes int8 activations; norms stay int16 composites."""
    from quantlab.calibration.ranges import load_ranges
    from quantlab.check.graph import read_ops
    from quantlab.quantize.quantizer import quantize_to

    folder, _ = quantized
    fp32 = folder / "tiny-random_main_fp32.tflite"
    out = folder / "scratch_attn_o.tflite"
    quantize_to(fp32, build_recipe(16, {"attn_o": 8}), load_ranges(folder)[0], out)
    assert int8_fc_share(out) == pytest.approx(weight_share(fp32)["attn_o"], rel=1e-6)
    ops = read_ops(out)
    norms = [o for o in ops if o.name == "STABLEHLO_COMPOSITE"]
    assert norms and all(o.outputs[0].dtype == "INT16" for o in norms)
    # the shipped plain recipes: int16_w8 has no int8 FC input, int8 has all
    assert int8_fc_share(folder / "tiny-random_main_int16_w8.tflite") == 0.0
    assert int8_fc_share(folder / "tiny-random_main_int8.tflite") == pytest.approx(1.0)
    # the same recipe and ranges give the same file (the search reuses a sensitivity row's scores on that ground)
    again = folder / "scratch_attn_o_again.tflite"
    quantize_to(fp32, build_recipe(16, {"attn_o": 8}), load_ranges(folder)[0], again)
    assert again.read_bytes() == out.read_bytes()
    out.unlink()
    again.unlink()


def test_smoothing_keeps_the_function_and_the_embedder(tiny_model):
    """Scale migration changes weights, not outputs (float32 tolerance 1e-4 of the logit range)."""
    import copy

    from quantlab.export.smooth import activation_maxima, smooth

    model = copy.deepcopy(tiny_model.model)
    ids = torch.randint(3, 5000, (1, 48))
    with torch.no_grad():
        ref = model(ids).logits
        emb = model.model.embed_tokens.weight.clone()
        maxima = activation_maxima(model, [ids[0].tolist()])
        scales = smooth(model, maxima, 0.5)
        out = model(ids).logits
    assert max(scales.values()) > 1.5  # something was actually migrated
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()
    assert torch.equal(model.model.embed_tokens.weight, emb)  # the LM head was untied, the embedder untouched
    assert not torch.equal(model.lm_head.weight, emb)


def _ranges_both_ways(tiny_artifacts, tmp_path, windows: int, first: dict, second: dict | None):
    """Calibrate a copy of the tiny export twice with different options (once if `second` is None); (ranges,
    metadata) of each run."""
    import shutil

    from quantlab.calibration.capture import CapturePlan
    from quantlab.calibration.ranges import calibrate, load_ranges
    from quantlab.texts import default_calibration_texts

    folder = tmp_path / "copy"
    shutil.copytree(tiny_artifacts, folder, ignore=shutil.ignore_patterns("calibration.json", "*int*"))
    out = []
    for opts in (first, second) if second is not None else (first,):
        calibrate(folder, default_calibration_texts(), CapturePlan(windows=windows), quiet=True, **opts)
        out.append(load_ranges(folder))
    return out


def test_min_max_ranges_contain_moving_average_ranges(tiny_artifacts, tmp_path):
    """True min/max (quantlab's default) never clips what calibration saw; AEQ's moving average does narrow."""
    (ema, meta), (mm, _) = _ranges_both_ways(tiny_artifacts, tmp_path, 2, {"ranges": "moving_average"},
                                             {"ranges": "min_max"})
    assert meta["algorithm"] == "moving_average"
    narrower = 0
    for name, q in ema.items():
        if "max" not in q or name not in mm:
            continue
        assert np.all(mm[name]["max"] >= q["max"] - 1e-5) and np.all(mm[name]["min"] <= q["min"] + 1e-5), name
        narrower += int(np.any(mm[name]["max"] > q["max"] + 1e-5))
    assert narrower > 0


def test_profiler_capture_gives_the_all_tensors_ranges(tiny_artifacts, tmp_path):
    """The low-memory profiler capture (default) and ai-edge-quantizer's all-tensor capture agree on every range."""
    (full, _), (prof, meta) = _ranges_both_ways(tiny_artifacts, tmp_path, 1, {"capture": "all_tensors"},
                                                {"capture": "profiler"})
    assert meta["capture"] == "profiler" and set(full) <= set(prof)
    for name, q in full.items():
        if "max" in q:
            # (per-tensor ranges come back as shape (1,) from one capture and (1, 1, 1) from the other)
            np.testing.assert_allclose(np.ravel(prof[name]["max"]), np.ravel(q["max"]), rtol=1e-6, err_msg=name)
            np.testing.assert_allclose(np.ravel(prof[name]["min"]), np.ravel(q["min"]), rtol=1e-6, err_msg=name)


def test_the_host_lm_head_gives_the_in_model_ranges(tiny_artifacts, tmp_path):
    """Calibration's default takes decode's LM head out of the calibrated main and applies it on the host: every range
    is the in-model calibration's, bit for bit, except the head's output (torch's float32 product, not XNNPACK's:
    relative 1e-6), and the head-less copy does not outlive the call."""
    from quantlab.runtime.float_head import headless_copy

    (inside, meta_in), (host, meta) = _ranges_both_ways(tiny_artifacts, tmp_path, 2, {"host_head": False}, {})
    assert meta["host_head"] and not meta_in["host_head"] and set(host) == set(inside)
    head = headless_copy(next((tmp_path / "copy").glob("*_main_fp32.tflite")), tmp_path / "headless.tflite")
    assert head is not None and head.names
    for name, q in inside.items():
        for k in ("min", "max"):
            if k not in q:
                continue
            if name in head.names:
                np.testing.assert_allclose(np.ravel(host[name][k]), np.ravel(q[k]), rtol=1e-6, err_msg=name)
            else:
                assert np.array_equal(host[name][k], q[k]), (name, k, host[name][k], q[k])
    assert not list((tmp_path / "copy").glob(".calibrate-*"))


def test_calibration_interpreters_from_file_give_aeqs_own_ranges(tiny_artifacts, tmp_path, monkeypatch):
    """quantlab builds ai-edge-quantizer's calibration interpreters from the file (4 GB less at the 1B scale) and with
    this machine's thread count; the ranges are exactly those of AEQ's own interpreter builder."""
    import contextlib

    from quantlab import aeq as aeq_module
    from quantlab.calibration import ranges

    built = []
    real = ranges.interpreters_from_file

    @contextlib.contextmanager
    def spy(xnnpack=True):
        built.append(xnnpack)
        with real(xnnpack):
            yield

    for module in (ranges, aeq_module):  # the calibrator's (ranges.py), the K/V alignment's (aeq.alignment_utils)
        monkeypatch.setattr(module, "interpreters_from_file", spy)
    [(ours, _)] = _ranges_both_ways(tiny_artifacts, tmp_path, 1, {}, None)
    assert built == [True, False]  # the calibrator with XNNPACK, the K/V alignment's look-up without
    for module in (ranges, aeq_module):
        monkeypatch.setattr(module, "interpreters_from_file", lambda xnnpack=True: contextlib.nullcontext())
    [(aeq, _)] = _ranges_both_ways(tiny_artifacts, tmp_path / "aeq", 1, {}, None)
    assert set(ours) == set(aeq)
    for name, q in aeq.items():
        for k in ("min", "max"):
            if k in q:
                np.testing.assert_array_equal(ours[name][k], q[k], err_msg=name)


def test_search_axis_stops_after_its_first_candidate_over_the_tolerance():
    """walk_axes builds candidates in order and stops an axis at its first quantized candidate over the tolerance
    (that one is still built); the base candidate (no group quantized) never stops the int8 axis, and `exhaustive`
    builds all. The ratios here are made up to show the trade-off: a later candidate that would fall back under the
    tolerance (a+b+c at 1.01) is skipped."""
    from quantlab.analyze.search import walk_axes

    int8 = [((), ()), (("a",), ()), (("a", "b"), ()), (("a", "b", "c"), ())]
    w4 = [((), ("a",)), ((), ("a", "b"))]
    ratio = dict(zip(int8 + w4, [1.06, 1.02, 1.07, 1.01, 1.20, 1.30]))
    seen = []

    def build(*key):
        seen.append(key)
        return ratio[key]

    left_out = []  # what the progress bar's total loses as each axis stops
    skipped = walk_axes([int8, w4], build, 1.05, exhaustive=False, skip=left_out.append)
    assert seen == [int8[0], int8[1], int8[2], w4[0]]
    assert skipped == [int8[3], w4[1]] and left_out == [1, 1]
    seen.clear()
    left_out.clear()
    skipped = walk_axes([int8, w4], build, 1.05, exhaustive=True, skip=left_out.append)
    assert seen == int8 + w4 and skipped == [] and left_out == []


def test_compile_slots_hold_the_queue_to_one_until_widened():
    """The search's compiles (Slots): one at a time while candidates are still scored, then `widen` lets the queued
    ones run side by side; every call's result comes back."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from quantlab.analyze.search import Slots

    slots, lock = Slots(1), threading.Lock()
    running, most = [0], [0]

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.15)
        with lock:
            running[0] -= 1
        return i

    with ThreadPoolExecutor(max_workers=4) as pool:
        first = [pool.submit(slots.run, work, i) for i in range(3)]
        time.sleep(0.2)
        assert most[0] == 1  # queued behind the one slot
        slots.widen(2)
        rest = [pool.submit(slots.run, work, i) for i in range(3, 6)]
        assert [f.result() for f in first + rest] == list(range(6))
    assert most[0] == 2  # never more than the widened count


@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_sensitivity_rows_side_by_side_score_as_one_after_another(quantized_copy):
    """Rows measured by pinned worker processes (one core, one LiteRT thread each) give the scores the bench gives
    measuring them itself with every core: KL and perplexity within 1e-6 relative, top-1 equal; the workers' scratch
    files and the FP32 logits file are gone afterwards, and the bench remembers every score (the search reuses
    them)."""
    import json

    from quantlab.analyze import sensitivity as sens
    from quantlab.analyze.sensitivity import Bench

    folder, _ = quantized_copy
    bench = Bench(folder, tokens=40)
    recipes = [build_recipe(16, {}), build_recipe(16, {"attn_o": 8}), build_recipe(16, {}, weight_overrides={"mlp_in": 4}),
               build_recipe(16, {"lm_head": 8})]
    side = bench.measure_all(recipes, jobs=2)
    assert sens.row_workers(bench.fp32_path, len(recipes), 2) == 2
    assert not list(folder.glob(".analyze-row-*")) and not (folder / sens.REFERENCE_FILE).exists()
    assert all(json.dumps(r, sort_keys=True) in bench._scored for r in recipes)
    alone = Bench(folder, tokens=40).measure_all(recipes)  # jobs=1: the bench itself, every core
    for a, b in zip(side, alone):
        assert a["kl"] == pytest.approx(b["kl"], rel=1e-6, abs=1e-9)
        assert a["perplexity"] == pytest.approx(b["perplexity"], rel=1e-6)
        assert a["top1_agreement"] == b["top1_agreement"] and a["bytes"] == b["bytes"]
    bench.cleanup()
