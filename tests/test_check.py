"""`quantlab check` passes clean models and names the tensor in broken ones."""

from __future__ import annotations

import json

import pytest

from quantlab import cli
from quantlab.check.litert_rules import check_litert


def _main(folder, variant):
    return next(folder.glob(f"*_main_{variant}.tflite"))


@pytest.mark.parametrize("variant", ["fp32", "int8", "int16_w8"])
def test_clean_models_pass(quantized, variant, capsys):
    folder, _ = quantized
    assert check_litert(_main(folder, variant)) == []
    assert cli.main(["check", str(_main(folder, variant))]) == 0
    assert ": OK (LiteRT kernel rules)" in capsys.readouterr().out


def test_int16_zero_point_is_caught(quantized, tmp_path, capsys):
    from ai_edge_litert.tools import flatbuffer_utils

    folder, _ = quantized
    model = flatbuffer_utils.read_model(str(_main(folder, "int16_w8")))
    sg = model.subgraphs[0]
    victim = next(t for t in sg.tensors if t.type == 7 and t.quantization is not None  # 7 = INT16
                  and t.quantization.zeroPoint is not None and model.buffers[t.buffer].data is None)
    victim.quantization.zeroPoint = [3]
    broken = tmp_path / "broken.tflite"
    flatbuffer_utils.write_model(model, str(broken))
    found = check_litert(broken)
    hits = [v for v in found if v.rule == "int16-zero-point"]
    assert [v.tensor for v in hits] == [victim.name.decode()]
    assert cli.main(["check", str(broken), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert any(v["tensor"] == victim.name.decode() for v in report["violations"])


def test_float_island_is_caught(quantized_copy, tmp_path):
    from quantlab.quantize.quantizer import quantize
    from quantlab.quantize.schemes import parse

    folder, _ = quantized_copy
    recipe = parse("int8").recipe + [{"regex": ".*", "operation": "SOFTMAX", "algorithm_key": "no_quantize"}]
    path = tmp_path / "int8_float_softmax.json"
    path.write_text(json.dumps(recipe))
    rec = quantize(folder, str(path), quiet=True)
    found = check_litert(folder / rec.path)
    assert found and all(v.rule == "float-island" for v in found)
    assert {v.op for v in found} == {"SOFTMAX"}


def test_garbage_file_is_user_error(tmp_path, capsys):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    assert cli.main(["check", str(bad)]) == 2
    assert "not a valid LiteRT model" in capsys.readouterr().err


def test_qnn_rules_pass_quantlabs_own_mains(quantized, capsys):
    """quantlab's export avoids both measured QNN failures, so its quantized mains pass `--target qnn`."""
    from quantlab.check.qnn_rules import check_qnn

    folder, _ = quantized
    for v in ("int8", "int16_w8"):
        assert check_qnn(_main(folder, v)) == []
    assert cli.main(["check", str(_main(folder, "int16_w8")), "--target", "qnn"]) == 0
    assert "OK (LiteRT kernel and QNN HTP rules)" in capsys.readouterr().out


def test_qnn_wide_int16_fc_rule():
    from quantlab.check.graph import Op, Tensor
    from quantlab.check.qnn_rules import qnn_violations

    act = Tensor("h", "INT16", (1, 128, 640), False, (0.1,), (0,))
    w = Tensor("w", "INT8", (262144, 640), True, (0.1,), (0,))
    wide = Op("prefill_128", 7, "FULLY_CONNECTED", (act, w), (Tensor("logits", "INT16", (1, 128, 262144), False, (0.1,), (0,)),))
    narrow = Op("prefill_128", 8, "FULLY_CONNECTED", (act, w), (Tensor("l2", "INT16", (1, 128, 65536), False, (0.1,), (0,)),))
    one_row = Op("decode", 9, "FULLY_CONNECTED", (act, w), (Tensor("logits", "INT16", (1, 1, 262144), False, (0.1,), (0,)),))
    assert [v.rule for v in qnn_violations([wide, narrow, one_row])] == ["qnn-int16-wide-fc"]


def test_qnn_prefill_mask_size_rule():
    """LiteRT-LM #3508 / litert-torch PR #1226: 2 B x heads x T x (C + T) <= 1 MiB. Gemma3-270M shapes (4 heads): the
    old default (prefill 128, cache 1280: 1,441,792 B) is flagged, the new one (prefill 64: 688,128 B) and
    prefill 128 at cache 896 (exactly 1 MiB) pass; decode is never flagged."""
    from quantlab.check.graph import Op, Tensor
    from quantlab.check.qnn_rules import qnn_violations

    def mask_add(sig, t, c, dtype="INT16"):
        scores = Tensor(f"{sig}_scores", dtype, (1, 4, t, c + t), False, (0.1,), (0,))
        mask = Tensor(f"{sig}_mask_local", dtype, (1, 1, t, c + t), False, (0.1,), (0,))
        return Op(sig, 3, "ADD", (scores, mask), (Tensor(f"{sig}_masked", dtype, (1, 4, t, c + t), False, (0.1,), (0,)),))

    found = qnn_violations([mask_add("prefill_128", 128, 1280), mask_add("prefill_64", 64, 1280),
                            mask_add("prefill_128", 128, 896), mask_add("decode", 1, 32768)])
    assert [(v.rule, v.signature) for v in found] == [("qnn-prefill-mask-size", "prefill_128")]
    assert "1,441,792 B" in found[0].detail and "#3508" in found[0].detail


def test_qnn_int16_add_broadcast_rule_on_a_real_graph(tmp_path):
    """The pattern QNN HTP 2.51 computes wrongly (int16 ADD [1, T, 1], T >= 8, then a broadcast MUL), as the residual
    rotation first wrote it, is flagged; the rotation as exported now is not."""
    import litert_torch
    import numpy as np
    import torch
    from ai_edge_quantizer import quantizer

    from quantlab.check.qnn_rules import check_qnn
    from quantlab.quantize.schemes import parse

    class Old(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 1, bias=False)
            self.register_buffer("v", torch.randn(64))

        def forward(self, y):
            return {"out": y - (self.fc(y) + y[..., 3:4] * 0.5) * self.v}

    class New(Old):
        def forward(self, y):
            return {"out": y - (self.fc(y) * self.v + y[..., 3:4] * (0.5 * self.v))}

    sample = {"y": torch.zeros(1, 8, 64)}
    rng = np.random.default_rng(0)
    data = {"prefill_8": [{"y": rng.standard_normal((1, 8, 64)).astype(np.float32)} for _ in range(4)]}
    rules = {}
    for name, mod in (("old", Old()), ("new", New())):
        fp = tmp_path / f"{name}.tflite"
        litert_torch.signature("prefill_8", mod.eval(), sample_kwargs=sample).convert().export(str(fp))
        q = quantizer.Quantizer(str(fp), parse("int16_w8").recipe)
        (tmp_path / f"{name}_int16.tflite").write_bytes(
            q.quantize(q.calibrate(data), enable_progress_report=False).quantized_model)
        rules[name] = [v.rule for v in check_qnn(tmp_path / f"{name}_int16.tflite")]
    assert rules == {"old": ["qnn-int16-add-bcast"], "new": []}
