"""Calibration, both schemes and quantized I/O on the tiny random Gemma3 (real ai-edge-quantizer, real LiteRT).

Accuracy of a random-weight model means nothing, so these tests check structure and plumbing: what the host copies
between signatures shares quantization parameters, I/O dtypes follow the scheme, calibration reaches every position,
every variant generates, and a quantized model's logits stay close to FP32 on the first chunk (tolerance stated below).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from quantlab import cli, layout, manifest
from quantlab.calibration.ranges import CALIBRATION_FILE, load_ranges
from quantlab.texts import EVAL_TOPICS, default_calibration_texts, default_eval_text
from quantlab.errors import UserError
from quantlab.quantize.quantizer import quantize
from quantlab.runtime.session import ArtifactSet, generate
from tests.conftest import TINY_CACHE, TINY_PREFILL


def test_calibration_covers_every_position(quantized):
    folder, meta = quantized
    assert meta["max_position"] == TINY_CACHE - 1
    assert meta["samples"][f"prefill_{TINY_PREFILL}"] == 2 * TINY_CACHE // TINY_PREFILL
    # Decode at every position (the default decode_stride 1: decode alone has the LM head) plus one sample at each
    # chunk boundary but the last, in each of the 2 windows.
    assert meta["samples"]["decode"] == 2 * TINY_CACHE + 2 * (TINY_CACHE // TINY_PREFILL - 1)
    qsvs, again = load_ranges(folder)
    assert again == meta and qsvs
    # Ranges of every cache input are non-degenerate: no zero-only calibration.
    arts = ArtifactSet(folder, "int16_w8")
    for name, spec in arts.main.inputs["decode"].items():
        if layout.is_cache(name):
            assert spec.scale > 1e-6, name


@pytest.mark.parametrize("processes", [1, 2])
def test_windows_calibrated_side_by_side_or_in_turn_give_the_same_ranges(quantized, tmp_path, monkeypatch, processes):
    """The 2 windows calibrated by 2 worker processes (a core each) and by one process in turn: bit for bit the ranges
    the fixture's calibration saved (min/max merge in any order), the LM head's range taken on the host included."""
    import shutil

    from quantlab.calibration import windows
    from quantlab.calibration.capture import CapturePlan
    from quantlab.calibration.ranges import calibrate

    folder, meta = quantized
    copy = tmp_path / "again"
    shutil.copytree(folder, copy)
    monkeypatch.setattr(windows, "window_workers", lambda *_: processes)
    again = calibrate(copy, default_calibration_texts(), CapturePlan(windows=2), quiet=True)
    assert again["processes"] == processes and again["samples"] == meta["samples"] and again["host_head"]
    assert len(again.get("worker_peak_rss_mb", [])) == (processes if processes > 1 else 0)
    ours, theirs = load_ranges(copy)[0], load_ranges(folder)[0]
    assert ours.keys() == theirs.keys()
    for name, qsv in theirs.items():
        for k in ("min", "max"):
            np.testing.assert_array_equal(ours[name][k], qsv[k], err_msg=f"{name} {k}")


def test_calibration_and_evaluation_texts_are_disjoint():
    import pydoc_data.topics as topics

    calib = set(default_calibration_texts())
    assert not any(topics.topics[k] in calib for k in EVAL_TOPICS)
    assert default_eval_text()


@pytest.mark.parametrize("scheme,dtype", [("int8", np.int8), ("int16_w8", np.int16)])
def test_io_dtypes_and_shared_kv_params(quantized, scheme, dtype):
    folder, _ = quantized
    arts = ArtifactSet(folder, scheme)
    for sig in arts.main.signatures:
        ins, outs = arts.main.inputs[sig], arts.main.outputs[sig]
        assert ins["embeddings"].dtype == dtype
        if sig == "decode":  # the one signature with logits
            assert outs[layout.LOGITS].dtype == dtype
        if dtype == np.int16:
            assert all(s.zero_point == 0 for s in (*ins.values(), *outs.values()) if s.dtype == np.int16)
    dec, pre = arts.main.inputs["decode"], arts.main.inputs[arts.prefill_sig]
    dec_out = arts.main.outputs["decode"]
    for i in range(arts.model_info.num_layers):
        for kv in ("k", "v"):
            # (prefill's last layer reads no cache: without logits its attention is dead code, the input float)
            read = (pre[layout.kv_cache(kv, i)],) if i < arts.model_info.num_layers - 1 else ()
            params = {(s.dtype, s.scale, s.zero_point)
                      for s in (dec[layout.kv_cache(kv, i)], *read, dec_out[layout.kv_slice(kv, i)])}
            assert len(params) == 1, f"{kv} cache of layer {i} has differing parameters: {params}"


def test_int16_first_chunk_close_to_fp32(quantized):
    # Tolerance: on the first 8 positions (decode at each) int16 activations with int8 weights keep the top-1 token for at
    # least 6 of 8 positions of this random model, whose next-token distribution is nearly flat.
    folder, _ = quantized
    fp, q = ArtifactSet(folder), ArtifactSet(folder, "int16_w8")
    ids = fp.encode(default_eval_text())[:TINY_PREFILL]
    a = next(fp.session().decode_chunks(ids, TINY_PREFILL))
    b = next(q.session().decode_chunks(ids, TINY_PREFILL))
    agree = (a.argmax(-1) == b.argmax(-1)).mean()
    assert agree >= 0.75, f"top-1 agreement {agree:.2f}; worst |logit diff| {np.abs(a - b).max():.3g}"


@pytest.mark.parametrize("scheme", ["int8", "int16_w8"])
def test_every_variant_generates(quantized, scheme):
    folder, _ = quantized
    g = generate(ArtifactSet(folder, scheme), "The capital of France is", 6)
    assert len(g.tokens) >= 1 and g.decode_tps > 0


def test_manifest_records_variants(quantized):
    folder, _ = quantized
    data = manifest.load(folder)
    for scheme, dtype in (("int8", "int8"), ("int16_w8", "int16")):
        art = data.artifacts[scheme]
        assert art.io_dtype["embeddings"] == dtype and art.bytes > 0 and len(art.sha256) == 64
        assert (folder / art.path).stat().st_size == art.bytes


def test_quantize_refuses_to_overwrite_and_unknown_scheme(quantized, capsys):
    folder, _ = quantized
    assert cli.main(["quantize", str(folder), "--scheme", "int8"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["quantize", str(folder), "--scheme", "int4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int8, int16_w8" in err[0]


def test_calibrate_rejects_empty_text(tiny_artifacts, tmp_path, capsys):
    empty = tmp_path / "e.txt"
    empty.write_text("\n")
    assert cli.main(["calibrate", str(tiny_artifacts), "--text", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err


def test_ranges_from_another_model_are_refused(quantized, tmp_path):
    import shutil

    folder, _ = quantized
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    body = json.loads((other / CALIBRATION_FILE).read_text())
    body["metadata"]["main_sha256"] = "0" * 64
    (other / CALIBRATION_FILE).write_text(json.dumps(body))
    with pytest.raises(UserError, match="another FP32 main"):
        load_ranges(other)


def test_recipe_file_with_override(quantized_copy, tmp_path):
    """A user recipe: int16 everywhere but softmax kept in float; it becomes its own variant."""
    from quantlab.quantize.schemes import parse

    folder, _ = quantized_copy
    recipe = parse("int16_w8").recipe + [
        {"regex": ".*", "operation": "SOFTMAX", "algorithm_key": "no_quantize"}]
    path = tmp_path / "a16_float_softmax.json"
    path.write_text(json.dumps(recipe))
    rec = quantize(folder, str(path), quiet=True)
    assert rec.path.endswith("_main_a16_float_softmax.tflite")
    g = generate(ArtifactSet(folder, "a16_float_softmax"), "Hello", 4)
    assert len(g.tokens) >= 1


def test_dynamic_int8_keeps_float_io_int8_weights_and_fp32_top1(quantized, tmp_path):
    """The CPU scheme: float activations (quantized per call by the kernels), int8 weights. Tolerance: on the first
    chunk it keeps fp32's top-1 token for at least 7 of 8 positions of the random model (int16_w8 is held to 6)."""
    import shutil

    from quantlab.check.graph import read_ops

    folder = tmp_path / "copy"
    shutil.copytree(quantized[0], folder)
    rec = quantize(folder, "dynamic_int8", quiet=True)
    arts = ArtifactSet(folder, "dynamic_int8")
    assert rec.io_dtype["embeddings"] == "float32"
    assert all(s.dtype == np.float32 for s in arts.main.inputs["decode"].values() if s.name != "input_pos")
    fc_weights = [o.inputs[1] for o in read_ops(folder / rec.path) if o.name == "FULLY_CONNECTED"]
    assert fc_weights and all(t.dtype == "INT8" and t.constant for t in fc_weights)
    ids = arts.encode(default_eval_text())[:TINY_PREFILL]
    a = next(ArtifactSet(folder).session().decode_chunks(ids, TINY_PREFILL))
    b = next(arts.session().decode_chunks(ids, TINY_PREFILL))
    agree = (a.argmax(-1) == b.argmax(-1)).mean()
    assert agree >= 7 / 8, f"top-1 agreement {agree:.2f}; worst |logit diff| {np.abs(a - b).max():.3g}"


def test_reference_scored_first_and_let_go_gives_the_streamed_metrics(quantized_copy):
    """evaluate() scores the reference first and drops its models (memory at the 1B scale); the metrics are exactly
    those of scoring both side by side."""
    from quantlab.evaluate.evaluator import evaluate, score
    from quantlab.evaluate.scorers import CachedScorer, LiteRTScorer
    from quantlab.evaluate.windows import windows

    folder, _ = quantized_copy
    text = default_eval_text()
    res = evaluate(folder, text, "int16_w8", "fp32", max_tokens=2 * (TINY_CACHE - 1), quiet=True)
    arts = ArtifactSet(folder, "int16_w8")
    wins = windows(arts.encode(text)[1:][: 2 * (TINY_CACHE - 1)], arts.model_info.bos_token_id, TINY_CACHE)
    streamed, _ = score(LiteRTScorer(arts), LiteRTScorer(ArtifactSet(folder)), wins, quiet=True)
    assert res.windows == len(wins) == 2
    for k in ("perplexity", "kl", "top1_agreement", "tokens_scored"):
        assert getattr(res, k) == pytest.approx(streamed[k], rel=1e-9), k
    cached = CachedScorer(LiteRTScorer(ArtifactSet(folder))).detach(wins)
    assert cached.inner is None and len(list(cached.chunks(wins[0]))) == len(list(LiteRTScorer(arts).chunks(wins[0])))


def test_fp32_logits_are_stored_once_and_read_back_bit_for_bit(quantized_copy, monkeypatch):
    """FP32's own evaluation stores its logits; a variant compared with FP32 afterwards reads them (no FP32 pass: one
    would raise here) and gets exactly the metrics of scoring both side by side. An interrupted pass stores nothing."""
    from quantlab.evaluate.evaluator import evaluate, score
    from quantlab.evaluate.scorers import LiteRTScorer, StoredScorer
    from quantlab.evaluate.stored_logits import STORE_DIR, StoredLogits
    from quantlab.evaluate.windows import windows

    folder, _ = quantized_copy
    text, n = default_eval_text(), 2 * (TINY_CACHE - 1)
    fp32 = ArtifactSet(folder)
    wins = windows(fp32.encode(text)[1:][:n], fp32.model_info.bos_token_id, TINY_CACHE)
    evaluate(folder, text, "fp32", None, max_tokens=n, decode_steps=2, quiet=True)
    store = StoredLogits(fp32)
    assert len(list((folder / STORE_DIR).glob("*.npy"))) == len(wins) == 2
    for w in wins:
        fresh = np.concatenate(list(LiteRTScorer(ArtifactSet(folder)).chunks(w)))
        assert np.array_equal(np.concatenate(list(store.read(w, TINY_PREFILL))), fresh)

    arts = ArtifactSet(folder, "int16_w8")
    streamed, _ = score(LiteRTScorer(arts), LiteRTScorer(ArtifactSet(folder)), wins, quiet=True)
    real_chunks = LiteRTScorer.chunks

    def no_fp32_pass(self, window):
        assert self.arts.variant != "fp32", "FP32 was run again although its logits were stored"
        return real_chunks(self, window)

    monkeypatch.setattr(LiteRTScorer, "chunks", no_fp32_pass)
    res = evaluate(folder, text, "int16_w8", "fp32", max_tokens=n, decode_steps=2, quiet=True)
    for k in ("perplexity", "kl", "top1_agreement", "max_abs_logit_diff", "tokens_scored"):
        assert getattr(res, k) == streamed[k], k
    monkeypatch.setattr(LiteRTScorer, "chunks", real_chunks)

    other = [fp32.model_info.bos_token_id, *wins[0][1:][::-1]]
    gen = StoredScorer(ArtifactSet(folder)).chunks(other)
    next(gen)
    gen.close()
    assert not store.has(other) and not list((folder / STORE_DIR).glob(".*"))


def test_4bit_weights_scored_through_their_int8_copy_give_the_same_logits(quantized_copy):
    """The scorers' copy of a 4-bit main (runtime/widen_int4.py) holds no 4-bit tensor, and decode over a window gives
    the 4-bit file's logits bit for bit (tolerance: none), as does the copy with its LM head on the host
    (runtime/scoring_main.py); a main without 4-bit weights is widened to nothing."""
    import copy

    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    from quantlab.runtime.litert_model import LiteRTModel
    from quantlab.runtime.scoring_main import scoring_main
    from quantlab.runtime.widen_int4 import scoring_copy, unpack_int4

    assert unpack_int4(np.array([0x21, 0xF8, 0x07], np.uint8), 5).tolist() == [1, 2, -8, -1, 7]
    folder, _ = quantized_copy
    quantize(folder, "int16_w4", quiet=True)
    arts = ArtifactSet(folder, "int16_w4")
    src = arts.path("int16_w4")
    widened = scoring_copy(src, folder / "widened.tflite")
    assert widened != src
    types = [t.type for sg in fbu.read_model(str(widened)).subgraphs for t in sg.tensors]
    assert fb.TensorType.INT4 not in types and fb.TensorType.INT8 in types
    ids = arts.encode(default_eval_text())[: TINY_CACHE // 2]
    original = np.concatenate(list(arts.session().decode_chunks(ids, TINY_PREFILL)))
    wide = copy.copy(arts)
    wide.main = LiteRTModel(widened)
    assert np.array_equal(np.concatenate(list(wide.session().decode_chunks(ids, TINY_PREFILL))), original)
    w8 = ArtifactSet(folder, "int16_w8").path("int16_w8")
    assert scoring_copy(w8, folder / "unused.tflite") == w8 and not (folder / "unused.tflite").exists()
    # the scorers' full copy (runtime/scoring_main.py) also takes the widened table's LM head to the host
    scoring = scoring_main(src, folder / "scoring.tflite")
    assert scoring.head is not None
    split = copy.copy(arts)
    split.main = scoring.model
    got = np.concatenate(list(split.session().decode_chunks(ids, TINY_PREFILL, scoring.head)))
    assert np.array_equal(got, original)


def test_quantized_mains_ship_with_the_int8_embedder(quantized, tiny_model):
    """The embedding table at int8, one scale per row: about a quarter of the float file, and every embedding within half a
    quantization step of the FP32 embedder's (step = the row's largest |value| / 127, Gemma3's sqrt(hidden) scaling
    included; plus 1e-5 for float32 rounding)."""
    from quantlab.check.graph import read_ops

    folder, _ = quantized
    data = manifest.load(folder).artifacts
    emb, fp = data["embedder_int8"], data["embedder_fp32"]
    vocab, hidden = tiny_model.config.vocab_size, tiny_model.config.hidden_size
    assert emb.role == "embedder" and fp.bytes > 4 * vocab * hidden
    # int8 rows plus, in each of the 2 signatures' tensor of the table, a float32 scale and an int64 zero point per
    # row (ai-edge-quantizer's per-channel form)
    assert vocab * hidden < emb.bytes < vocab * (hidden + 2 * 12) + 100_000
    assert data["int8"].embedder == data["int16_w8"].embedder == "embedder_int8"
    arts, fp_arts = ArtifactSet(folder, "int16_w8"), ArtifactSet(folder)
    assert arts.embedder_key == "embedder_int8" and fp_arts.embedder_key == "embedder_fp32"
    table = [o.inputs[1] for o in read_ops(folder / emb.path) if o.name == "EMBEDDING_LOOKUP"]
    assert table and all(t.dtype == "INT8" and t.constant for t in table)

    # Against the FP32 embedder (its table is the PyTorch one times the residual-stream rotation, test_rotate.py).
    tokens = np.array([[2, 17, 4095, 100_000, tiny_model.config.vocab_size - 1]], np.int32)
    for i in range(tokens.shape[1]):
        feed = {layout.EMBEDDER_INPUT: tokens[:, i : i + 1]}
        row = arts.embedder.run("decode_embedder", feed)[layout.EMBEDDER_OUTPUT][0, 0]
        ref = fp_arts.embedder.run("decode_embedder", feed)[layout.EMBEDDER_OUTPUT][0, 0]
        tok = tokens[0, i]
        bound = np.abs(ref).max() / 254 + 1e-5
        assert np.abs(row - ref).max() <= bound, f"token {tok}: {np.abs(row - ref).max():.3g} > {bound:.3g}"
        assert np.abs(row - ref).max() > 0  # it is quantized, not a float copy
