"""QNN AOT compile with the real LiteRT Qualcomm plugin and the QNN host libraries from onnxruntime-qnn."""

from __future__ import annotations

import math

import pytest

from quantlab import cli, manifest
from quantlab.compile.compiler import compile_model


@pytest.fixture(scope="module")
def int8_main(quantized):
    folder, _ = quantized
    return next(folder.glob("*_main_int8.tflite"))


def test_int8_compiles_fully_for_sm8750_with_weight_sharing(int8_main, tmp_path):
    res = compile_model(int8_main, "SM8750", tmp_path / "int8_aot.tflite")
    assert set(res.coverage) == {"prefill_8", "decode"}
    for sig, c in res.coverage.items():
        assert c["ops_offloaded"] == c["ops_total"] > 0, (sig, c)
        assert c["partitions"] == 1
    assert res.fully_offloaded and not res.rejected
    assert res.dispatch_ops == 2  # one NPU partition per signature
    # Weight sharing: prefill and decode share one copy of the weights (goal: <= 1.05x the int8 file).
    assert res.bytes <= 1.05 * res.input_bytes
    # Without sharing, the weights both signatures use (every FC but the LM head, which only decode has) are stored
    # twice: the file grows by at least 90 % of their bytes (int8: one byte per element).
    from quantlab.check.graph import read_ops

    both = sum(math.prod(o.inputs[1].shape) for o in read_ops(int8_main)
               if o.signature == "prefill_8" and o.name == "FULLY_CONNECTED" and o.inputs[1].constant)
    unshared = compile_model(int8_main, "SM8750", tmp_path / "int8_aot_unshared.tflite", weight_sharing=False)
    assert both > 0 and unshared.bytes - res.bytes > 0.9 * both, (unshared.bytes - res.bytes, both)


def test_int16_main_compiles_fully(quantized, tmp_path):
    """Attention scores as bmm_4d and the LM head in 65,536-wide blocks: int16 main fully offloads on SM8650."""
    folder, _ = quantized
    res = compile_model(next(folder.glob("*_main_int16_w8.tflite")), "SM8650", tmp_path / "int16_aot.tflite")
    assert res.fully_offloaded and not res.rejected and res.dispatch_ops == 2


@pytest.fixture(scope="module")
def int16_fc_toy(tmp_path_factory):
    """A toy whose matmul against a runtime tensor converts to FULLY_CONNECTED, quantized to int16 activations."""
    import litert_torch
    import numpy as np
    import torch
    from ai_edge_quantizer import quantizer

    from quantlab.quantize.schemes import parse

    class Toy(torch.nn.Module):
        def forward(self, x, y):
            return {"out": torch.matmul(x, y.transpose(2, 3))}

    folder = tmp_path_factory.mktemp("toy")
    sample = {"x": torch.zeros(1, 1, 4, 32), "y": torch.zeros(1, 1, 64, 32)}
    litert_torch.signature("toy", Toy(), sample_kwargs=sample).convert().export(str(folder / "toy_fp32.tflite"))
    q = quantizer.Quantizer(str(folder / "toy_fp32.tflite"), parse("int16_w8").recipe)
    rng = np.random.default_rng(0)
    data = {"toy": [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in sample.items()} for _ in range(4)]}
    (folder / "toy_int16.tflite").write_bytes(q.quantize(q.calibrate(data), enable_progress_report=False).quantized_model)
    return folder / "toy_int16.tflite"


def test_rejected_ops_carry_the_compilers_reason_and_check_predicts_them(int16_fc_toy, tmp_path):
    from quantlab.check.qnn_rules import check_qnn

    res = compile_model(int16_fc_toy, "SM8750", tmp_path / "toy_aot.tflite")
    assert not res.fully_offloaded and len(res.rejected) == 1
    r = res.rejected[0]
    assert r.op == "FullyConnected" and r.qnn_error == "3110" and r.signature == "toy"
    assert all(t.startswith("SFIXED_POINT_16") for t in r.qnn_io[:2])
    assert "Unsupported input/output datatypes" in r.reason
    predicted = [(v.signature, v.op_index) for v in check_qnn(int16_fc_toy) if v.rule == "qnn-int16-act-matmul"]
    assert predicted == [(r.signature, r.op_index)]


def test_unknown_soc_lists_supported(int8_main, capsys):
    assert cli.main(["compile", str(int8_main), "--soc", "SM1234"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SM8750" in err[0] and "SM8650" in err[0]


def test_cli_records_compiled_artifact_in_manifest(quantized_copy, capsys):
    import json

    folder, _ = quantized_copy
    model = next(folder.glob("*_main_int8.tflite"))
    assert cli.main(["compile", str(model), "--soc", "SM8750", "--overwrite"]) == 0
    assert "ops offloaded to the NPU" in capsys.readouterr().out
    arts = manifest.load(folder).artifacts
    rec = arts["int8_aot_sm8750"]
    cov = arts[rec.source].compiled[rec.soc].coverage["decode"]
    assert rec.role == "compiled" and cov["ops_offloaded"] == cov["ops_total"]


def test_int8_rmsnorm_is_rejected_as_check_predicts(quantized, tmp_path):
    """RMSNorm composites at int8: the HTP validator rejects each (QNN error 3110) and `check --target qnn` names
    exactly those ops; at int16 (quantlab's recipes) none is rejected. The search's O2 check rejects the same ops and
    partitions the rest the same way as O3."""
    from quantlab.quantize.groups import build_recipe
    from quantlab.calibration.ranges import load_ranges
    from quantlab.check.qnn_rules import check_qnn
    from quantlab.quantize.quantizer import quantize_to

    folder, _ = quantized
    model = tmp_path / "norms8.tflite"
    quantize_to(folder / "tiny-random_main_fp32.tflite", build_recipe(8, {"norms": 8}), load_ranges(folder)[0], model)
    res = compile_model(model, "SM8750", tmp_path / "norms8_aot.tflite")
    rejected = {(r.signature, r.op_index) for r in res.rejected if r.op == "StablehloComposite"}
    assert rejected and all(r.qnn_error == "3110" for r in res.rejected)
    predicted = {(v.signature, v.op_index) for v in check_qnn(model) if v.rule == "qnn-int8-rmsnorm"}
    assert predicted == rejected
    assert not [v for v in check_qnn(folder / "tiny-random_main_int8.tflite") if v.rule == "qnn-int8-rmsnorm"]
    checked = compile_model(model, "SM8750", tmp_path / "norms8_o2.tflite", opt_level="O2")
    assert checked.coverage == res.coverage
    assert [(r.signature, r.op_index, r.qnn_error) for r in checked.rejected] == \
        [(r.signature, r.op_index, r.qnn_error) for r in res.rejected]


def test_blockwise_4bit_weights_stop_the_compile_and_check_predicts_it(tmp_path):
    """ai-edge-quantizer can write int16 activations with 4-bit weights in blocks of 32 (only with skip_checks); the
    Qualcomm plugin refuses the whole model. The compile result must carry the plugin's own reason, and `check` must
    flag the weight before anyone compiles."""
    import copy

    import litert_torch
    import numpy as np
    import torch
    from ai_edge_quantizer import quantizer

    from quantlab.check.qnn_rules import check_qnn
    from quantlab.quantize.schemes import parse

    toy = torch.nn.Sequential(torch.nn.Linear(64, 128, bias=False), torch.nn.Linear(128, 64, bias=False)).eval()
    sample = {"input": torch.zeros(1, 4, 64)}
    fp32 = tmp_path / "toy_fp32.tflite"
    litert_torch.signature("toy", toy, sample_kwargs=sample).convert().export(str(fp32))
    recipe = copy.deepcopy(parse("int16_w4").recipe)
    fc = next(e for e in recipe if e["operation"] == "FULLY_CONNECTED")
    fc["op_config"]["weight_tensor_config"]["granularity"] = "BLOCKWISE_32"
    fc["op_config"]["skip_checks"] = True  # AEQ's validation refuses static blockwise; the user's recipe overrides it
    q = quantizer.Quantizer(str(fp32), recipe)
    rng = np.random.default_rng(0)
    data = {"toy": [{"input": rng.standard_normal((1, 4, 64)).astype(np.float32)} for _ in range(4)]}
    model = tmp_path / "toy_a16w4_b32.tflite"
    model.write_bytes(q.quantize(q.calibrate(data), enable_progress_report=False).quantized_model)

    flagged = [v for v in check_qnn(model) if v.rule == "qnn-blockwise-weight"]
    assert len(flagged) == 2 and all(v.op == "FULLY_CONNECTED" for v in flagged)
    from quantlab.compile.compiler import CompileFailed

    with pytest.raises(CompileFailed) as failed:
        compile_model(model, "SM8750", tmp_path / "toy_aot.tflite")
    assert any("Unsupported quantization type" in e for e in failed.value.errors), failed.value.errors
    assert "Unsupported quantization type" in str(failed.value)
    assert not (tmp_path / "toy_aot.tflite").exists()


def test_a_main_the_search_compiled_is_taken_from_the_search_not_compiled_again(quantized, tmp_path, monkeypatch):
    """A search that compiles at O3 keeps each candidate's compiled file (search._compiles); a later compile of the
    same bytes for the same SoC takes it with its record and runs no compiler; another SoC or other bytes are
    compiled."""
    import shutil

    from quantlab.analyze import search
    from quantlab.compile import compiler
    from quantlab.compile.kept import KeptCompiles

    folder, _ = quantized
    int8, int16 = next(folder.glob("*_main_int8.tflite")), next(folder.glob("*_main_int16_w8.tflite"))
    work = tmp_path / "D"
    work.mkdir()
    cand = work / ".analyze-candidate-0.tflite"
    shutil.copy(int8, cand)
    found = search._compiles(cand, "SM8750", "O3")
    kept = KeptCompiles(work)
    assert not cand.exists() and kept.keys() == [found["kept_compile"]]

    runs = []
    real = compiler.run_measured
    monkeypatch.setattr(compiler, "run_measured", lambda *a, **k: runs.append(a) or real(*a, **k))
    main = work / "m_main_int8.tflite"
    shutil.copy(int8, main)
    other_soc = compile_model(main, "SM8650", work / "m_aot_SM8650.tflite")
    assert len(runs) == 1 and not other_soc.reused and kept.keys() == [found["kept_compile"]]
    other_bytes = compile_model(int16, "SM8750", tmp_path / "int16_aot.tflite")
    assert len(runs) == 2 and not other_bytes.reused and kept.keys() == [found["kept_compile"]]

    taken = compile_model(main, "SM8750", work / "m_aot_SM8750.tflite")
    assert len(runs) == 2 and taken.reused and kept.keys() == [] and not kept.dir.exists()
    assert taken.coverage == found["coverage"] and taken.bytes == found["compiled_bytes"]
    assert taken.fully_offloaded and taken.dispatch_ops == 2 and taken.record().reused
    # The taken file is what the compiler makes of these bytes: a fresh compile gives the same bytes.
    fresh = compile_model(main, "SM8750", tmp_path / "fresh.tflite")
    assert len(runs) == 3 and not fresh.reused
    assert fresh.path.read_bytes() == taken.path.read_bytes()


def test_the_search_checks_candidates_at_o2_with_the_coverage_o3_gives(quantized, tmp_path, monkeypatch):
    """The search's default level (O2) compiles with the real plugin and reports the same coverage per signature as
    the O3 compile every shipped main gets (compile/levels.py); its file is not kept, since it is not what ships, so a
    later compile of the same bytes runs the compiler at O3. An unknown level is refused before the compiler runs."""
    import shutil

    from quantlab.analyze import search
    from quantlab.compile import compiler
    from quantlab.compile.kept import KeptCompiles, compile_key
    from quantlab.errors import UserError

    folder, _ = quantized
    int16 = next(folder.glob("*_main_int16_w8.tflite"))
    work = tmp_path / "D"
    work.mkdir()
    cand = work / ".analyze-candidate-0.tflite"
    shutil.copy(int16, cand)
    runs = []
    real = compiler.run_measured
    monkeypatch.setattr(compiler, "run_measured", lambda *a, **k: runs.append(a[0]) or real(*a, **k))
    checked = search._compiles(cand, "SM8750", "O2")
    assert "kept_compile" not in checked and not KeptCompiles(work).dir.exists() and not cand.exists()
    assert runs[-1][-1] == "--qualcomm_optimization_level=O2"

    shipped = compile_model(int16, "SM8750", tmp_path / "int16_aot.tflite")
    assert runs[-1][-1] == "--qualcomm_optimization_level=O3" and not shipped.reused
    assert shipped.record().opt_level == "O3"
    assert checked["coverage"] == shipped.coverage and checked["fully_offloaded"] and shipped.fully_offloaded
    # Within 1 % in size (the optimizer's own constants differ), not the same file.
    assert abs(checked["compiled_bytes"] - shipped.bytes) <= 0.01 * shipped.bytes
    assert compile_key(int16, "SM8750", True, "O2") != compile_key(int16, "SM8750", True, "O3")

    with pytest.raises(UserError, match="O1, O2, O3"):
        compile_model(int16, "SM8750", tmp_path / "x.tflite", opt_level="O4")
    assert len(runs) == 2 and not (tmp_path / "x.tflite").exists()
