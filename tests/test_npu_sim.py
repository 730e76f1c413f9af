"""The compiled QNN graphs on onnxruntime-qnn's HTP simulator, against LiteRT's CPU interpreter on the same quantized
inputs (tiny random Gemma3, SM8750).

Tolerances: int16_w8 decode logits KL(CPU || simulator) < 1e-3 and the same argmax at every position (measured 2e-5);
int8 decode KL < 0.5 (the HTP's int8 kernels round differently, measured 0.07-0.22 across builds) and the simulator no
further from FP32 than twice the CPU's KL; the int16_w8 prefill (which crashed the simulator before the residual
rotation was rewritten, check rule qnn-int16-add-bcast) runs, its K/V slices within 5 % of the CPU's."""

from __future__ import annotations

import re

import numpy as np
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


def test_the_simulated_npu_drives_the_host_pipeline(quantized):
    """Prefill in several chunks and then decode, all on the simulator (SimMain in one child process): the caches the
    simulated NPU writes feed its next calls. int16_w8's last logits within KL 1e-3 of the CPU interpreter's, same
    argmax, after the prompt and after one more decode call (tolerance as for the spot check above)."""
    from quantlab import layout
    from quantlab.evaluate.metrics import log_softmax
    from quantlab.evaluate.npu_sim import sim_copy
    from quantlab.runtime.session import ArtifactSet
    from quantlab.runtime.sim_server import SimMain

    folder, _ = quantized
    arts = ArtifactSet(folder, "int16_w8")
    ids = arts.encode(default_eval_text())[:30]  # 29 tokens through prefill at T=8: 4 calls, then 1 decode
    cpu = arts.session()
    want = [cpu.prefill(ids)]
    with SimMain(sim_copy(arts, "SM8750"), [arts.prefill_sig, layout.DECODE], "SM8750") as main:
        sim = arts.session(main)
        got = [sim.prefill(ids)]
        nxt = int(got[0].argmax())
        got.append(sim.decode(nxt))
        calls = len(main.seconds)
    want.append(cpu.decode(nxt))
    assert calls == 6 and sim.pos == cpu.pos == 31
    for ref, test in zip(want, got):
        lr, lt = log_softmax(ref), log_softmax(test)
        assert float((np.exp(lr) * (lr - lt)).sum()) < 1e-3 and ref.argmax() == test.argmax()


def test_generate_on_the_simulator(quantized):
    """`quantlab generate --backend htp-sim`: greedy text from the compiled int16_w8 on the simulator; its tokens
    are the CPU interpreter's (the logits agree within KL 1e-3, above); fp32 is refused before anything runs."""
    from tests.helpers import run_cli

    folder, _ = quantized
    args = ["generate", str(folder), "--variant", "int16_w8", "--prompt", default_eval_text()[:60],
            "--max-new-tokens", "5"]
    sim, cpu = run_cli([*args, "--backend", "htp-sim"]), run_cli(args)
    assert sim.rc == 0 and cpu.rc == 0, sim.err[-2000:]
    assert "htp-sim SM8750]" in sim.err and "5 new tokens" in sim.err
    assert sim.out == cpu.out
    bad = run_cli(["generate", str(folder), "--prompt", "hi", "--backend", "htp-sim"])
    assert bad.rc == 2 and bad.err.strip().startswith("quantlab: error: the simulator runs quantized mains"), bad.err


def test_a_simulator_failure_in_generate_is_one_line(quantized, tmp_path):
    """The child holding the simulator fails on the graph (here a garbage context): generate exits 1 with one line
    naming the graphs and the SoC, no traceback."""
    from tests.helpers import run_cli

    folder, _ = quantized
    patch = f"""
import shutil
from pathlib import Path
from quantlab.evaluate import npu_sim
from quantlab.runtime.htp_sim import graphs
_made = npu_sim.sim_copy
def _broken(arts, soc):
    dst = Path({str(tmp_path / "broken_aot.tflite")!r})
    shutil.copyfile(_made(arts, soc), dst)
    g = graphs(dst)["decode"]
    with open(dst, "r+b") as f:  # overwrite the context's header
        f.seek(g.offset)
        f.write(b"\\xff" * min(4096, g.size // 4))
    return dst
npu_sim.sim_copy = _broken
"""
    res = run_cli(["generate", str(folder), "--variant", "int8", "--prompt", "hi", "--backend", "htp-sim"], patch)
    lines = res.err.strip().splitlines()
    assert res.rc == 1 and len(lines) == 1, res.err[-2000:]
    assert re.search(r"qnn_partition_\d \(decode\)", lines[0]) and "on SoC SM8750" in lines[0], lines[0]
    assert "Traceback" not in res.err
