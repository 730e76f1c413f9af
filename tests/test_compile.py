"""QNN AOT compile with the real LiteRT Qualcomm plugin and the QNN host libraries from onnxruntime-qnn."""

from __future__ import annotations

import pytest

from quantlab import cli
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
    unshared = compile_model(int8_main, "SM8750", tmp_path / "int8_aot_unshared.tflite", weight_sharing=False)
    assert unshared.bytes > 1.3 * res.bytes


def test_int16_rejected_ops_carry_the_compilers_reason(quantized, tmp_path):
    folder, _ = quantized
    res = compile_model(next(folder.glob("*_main_int16_w8.tflite")), "SM8650", tmp_path / "int16_aot.tflite")
    assert not res.fully_offloaded and res.rejected
    for r in res.rejected:
        assert r.op == "FullyConnected" and r.qnn_error == "3110"
        assert r.qnn_io[:2] and all(t.startswith("SFIXED_POINT_16") for t in r.qnn_io[:2])
        assert "Unsupported input/output datatypes" in r.reason
        assert "NpuAttention" in r.tensors[0]  # the activation x activation attention matmuls
    total = sum(c["ops_total"] - c["ops_offloaded"] for c in res.coverage.values())
    assert total == len(res.rejected)


def test_unknown_soc_lists_supported(int8_main, capsys):
    assert cli.main(["compile", str(int8_main), "--soc", "SM1234"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SM8750" in err[0] and "SM8650" in err[0]


def test_cli_records_compiled_artifact_in_manifest(quantized, capsys):
    import json

    folder, _ = quantized
    model = next(folder.glob("*_main_int8.tflite"))
    assert cli.main(["compile", str(model), "--soc", "SM8750", "--overwrite"]) == 0
    assert "ops offloaded to the NPU" in capsys.readouterr().out
    arts = json.loads((folder / "manifest.json").read_text())["artifacts"]
    rec = arts["int8_aot_sm8750"]
    assert rec["role"] == "compiled" and rec["coverage"]["decode"]["ops_offloaded"] == rec["coverage"]["decode"]["ops_total"]
