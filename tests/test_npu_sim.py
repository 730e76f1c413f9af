"""The compiled QNN graphs on onnxruntime-qnn's HTP simulator, against LiteRT's CPU interpreter on the same quantized
inputs (tiny random Gemma3, SM8750).

Tolerances: int16_w8 decode logits KL(CPU || simulator) < 1e-3 and the same argmax at every position (measured 2e-5);
int8 decode KL < 0.5 (the HTP's int8 kernels round differently, measured 0.07-0.22 across builds) and the simulator no
further from FP32 than twice the CPU's KL; the int16_w8 prefill (which crashed the simulator before the residual
rotation was rewritten, check rule qnn-int16-add-bcast) runs, its K/V slices within 5 % of the CPU's."""

from __future__ import annotations

import pytest

from quantlab.texts import default_eval_text


@pytest.fixture(scope="module")
def agreement(quantized):
    from quantlab.evaluate.npu_sim import npu_agreement

    folder, _ = quantized
    return {v: npu_agreement(folder, v, "SM8750", default_eval_text(), positions=4, chunk=1) for v in ("int8", "int16_w8")}


def test_int16_w8_decode_and_prefill_agree_with_the_cpu(agreement):
    d, p = agreement["int16_w8"]["decode"], agreement["int16_w8"]["prefill"]
    assert d["kl_vs_cpu"] < 1e-3 and d["top1_vs_cpu"] == 1.0, d
    assert "crashed" not in p and p["kv_relative_error_max"] < 0.05, p
    assert d["seconds_per_call"] > 0


def test_int8_decode_is_close_to_the_cpu(agreement):
    d = agreement["int8"]["decode"]
    assert d["kl_vs_cpu"] < 0.5, d
    assert d["kl_sim_vs_fp32"] < 2 * d["kl_cpu_vs_fp32"] + 1e-3, d


def test_a_crashing_graph_is_reported_not_fatal(quantized, tmp_path):
    """A compiled main whose QNN context is garbage: the simulator's process fails; the caller gets SimCrash naming the
    graph and the SoC, and the measurement records it."""
    import shutil

    from quantlab.evaluate import npu_sim
    from quantlab.runtime.htp_sim import SimCrash, graphs, run
    from quantlab.runtime.session import ArtifactSet

    folder, _ = quantized
    copy = tmp_path / "broken_aot.tflite"
    shutil.copyfile(npu_sim.sim_copy(ArtifactSet(folder, "int8"), "SM8750"), copy)
    g = graphs(copy)["decode"]
    with open(copy, "r+b") as f:  # overwrite the context's header
        f.seek(g.offset)
        f.write(b"\xff" * min(4096, g.size // 4))
    sample = {t.key: __import__("numpy").zeros(t.shape, t.dtype) for t in g.inputs}
    with pytest.raises(SimCrash, match=r"graph qnn_partition_\d \(decode\) crashed on SoC SM8750"):
        run(copy, "decode", [sample], "SM8750")
