"""GPTQ weight rounding: calibration's Hessians, ai-edge-quantizer's GPTQ, checked against nearest rounding."""

from __future__ import annotations

import numpy as np
import pytest

from quantlab.calibration.hessians import HESSIAN_FILE, attach_hessians, fc_inputs, fc_weights, weighted_errors
from quantlab.calibration.ranges import load_ranges
from quantlab.errors import UserError
from quantlab.quantize.quantizer import quantize_to, rounding_setup
from quantlab.quantize.rounding import with_rounding
from quantlab.quantize.schemes import parse
from quantlab.runtime.session import ArtifactSet


@pytest.fixture(scope="module")
def rounded(quantized, tmp_path_factory):
    """The tiny main, calibrated again with Hessians (in a copy of the folder), quantized int16_w8 twice from the same
    ranges: GPTQ-rounded and nearest-rounded."""
    import shutil

    from quantlab.calibration.capture import CapturePlan
    from quantlab.calibration.ranges import calibrate
    from quantlab.texts import default_calibration_texts

    src, _ = quantized
    tmp = tmp_path_factory.mktemp("gptq")
    folder = tmp / "arts"
    shutil.copytree(src, folder)
    calibrate(folder, default_calibration_texts(), CapturePlan(windows=2), quiet=True, hessians=True)
    fp32 = ArtifactSet(folder, "fp32").path("fp32")
    paths = {}
    for rounding in ("gptq", "nearest"):
        qsvs, _ = load_ranges(folder)
        recipe, applied = rounding_setup(folder, parse("int16_w8").recipe, qsvs, rounding)
        assert applied.startswith(rounding)
        paths[rounding] = tmp / f"{rounding}.tflite"
        quantize_to(fp32, recipe, qsvs, paths[rounding])
    return folder, fp32, paths


def test_gptq_lowers_the_hessian_weighted_error(rounded):
    """On the inputs calibration saw, GPTQ's weights must reproduce W·x better than nearest rounding: summed over
    every measured FC, tr(ΔW H ΔWᵀ) (H = mean xᵀx) must drop by more than 10 % (tiny random model, measured ~40 %).
    Unmeasured FCs (single-row rotation ops) get the identity and must round exactly as nearest does."""
    folder, fp32, paths = rounded
    err = {r: sum(e for e, _ in weighted_errors(fp32, p, folder / HESSIAN_FILE).values()) for r, p in paths.items()}
    assert err["gptq"] < 0.9 * err["nearest"], err
    where = {(sg, t): g for g in fc_inputs(fp32).values() for _, sg, t, _ in g.reads}
    gptq, nearest = fc_weights(paths["gptq"]), fc_weights(paths["nearest"])
    identity_fcs = 0
    for sig, (sg, rows) in gptq.items():
        for i, (x, w) in enumerate(rows):
            if not where[(sg, x)].measured:
                identity_fcs += 1
                np.testing.assert_array_equal(w, nearest[sig][1][i][1])
    assert identity_fcs > 0, "the tiny export has rotation FCs; they must be checked"


def test_gptq_keeps_size_and_first_chunk_accuracy(rounded):
    """Same graph, same bytes; and the GPTQ-rounded int16_w8 logits stay as close to FP32 as the nearest-rounded ones
    (relative L2 error within 1.2x of nearest's, decode at each of the first 8 positions of held-out text; random
    weights, so this checks plumbing, not the gain, which the Hessian-weighted test and the README measure)."""
    import copy

    from quantlab.texts import default_eval_text
    from quantlab.runtime.litert_model import LiteRTModel
    from tests.conftest import TINY_PREFILL

    folder, fp32, paths = rounded
    assert paths["gptq"].stat().st_size == paths["nearest"].stat().st_size
    fp = ArtifactSet(folder)
    ids = fp.encode(default_eval_text())[:TINY_PREFILL]
    ref = next(fp.session().decode_chunks(ids, TINY_PREFILL))
    rel = {}
    for r, path in paths.items():
        arts = copy.copy(ArtifactSet(folder, "int16_w8"))  # the int16_w8 variant's embedder, another main
        arts.main = LiteRTModel(path)
        got = next(arts.session().decode_chunks(ids, TINY_PREFILL))
        rel[r] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    assert rel["gptq"] < 1.2 * rel["nearest"], rel


def test_without_hessians_quantize_rounds_to_nearest(tmp_path, caplog):
    recipe = parse("int16_w8").recipe
    out, applied = rounding_setup(tmp_path, recipe, {}, "gptq")
    assert applied == "nearest" and out == recipe
    assert HESSIAN_FILE in caplog.text
    assert attach_hessians({}, tmp_path / HESSIAN_FILE) == 0
    (tmp_path / HESSIAN_FILE).write_bytes(b"not a zip")
    with pytest.raises(UserError, match="--hessians"):
        attach_hessians({}, tmp_path / HESSIAN_FILE)


def test_gptq_entries_follow_the_entries_they_copy():
    """with_rounding adds a GPTQ twin right after each static min/max entry that covers FCs, so later overrides (e.g.
    the norms' no_quantize, a16_a8's int8 FC groups) still win; dynamic_int8 is left alone."""
    base = parse("int16_w8").recipe
    out = with_rounding(base, "gptq")
    assert out[0] == base[0] and out[1]["algorithm_key"] == "GPTQ" and out[1]["operation"] == "FULLY_CONNECTED"
    assert out[1]["op_config"] == base[0]["op_config"] and out[2:] == base[1:]
    assert with_rounding(parse("dynamic_int8").recipe, "gptq") == parse("dynamic_int8").recipe
    assert with_rounding(base, "nearest") == base
    assert with_rounding(out, "nearest")[1]["algorithm_key"] == "min_max_uniform_quantize"


def test_cli_quantize_with_gptq_records_it(rounded):
    from quantlab import cli, manifest

    folder, _, _ = rounded
    assert cli.main(["quantize", str(folder), "--scheme", "int16_w8", "--rounding", "gptq", "--overwrite"]) == 0
    assert manifest.load(folder).artifacts["int16_w8"].quantize.weight_rounding.startswith("gptq (")
    assert cli.main(["quantize", str(folder), "--scheme", "int16_w8", "--overwrite"]) == 0
    assert manifest.load(folder).artifacts["int16_w8"].quantize.weight_rounding == "nearest"


def test_each_weight_has_one_hessian_group(rounded):
    """A weight buffer is shared by prefill and decode; its FCs' inputs must land in one group (one H), else the two
    signatures would round the same buffer with different Hessians."""
    _, fp32, _ = rounded
    groups = fc_inputs(fp32)
    seen: dict[str, str] = {}
    for key, g in groups.items():
        for b in key.split("+"):
            assert b not in seen, f"buffer {b} in groups {seen[b]} and {key}"
            seen[b] = key
    assert any(len({sig for sig, *_ in g.reads}) == 2 for g in groups.values() if g.measured)
