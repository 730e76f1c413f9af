"""Run state and the compiler-log parser, on a saved real log (LiteRT's Qualcomm plugin, SM8750, an int16
fully-connected with an activation as its weights: rejected with QNN error 3110)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantlab.compile.log_parse import parse_log
from quantlab.lab.stages import STAGES, Stage, validate_order
from quantlab.lab.state import RunState, key_of

LOG = Path(__file__).parent / "data" / "qnn_sm8750_int16_fc_rejected.log"


def test_run_state_records_skips_and_survives_a_restart(tmp_path):
    out = tmp_path / "f.txt"
    out.write_text("x")
    s = RunState(tmp_path)
    k = key_of("stage", 1, {"a": 1})
    assert not s.done("step", k, [out])
    s.record("step", k, 1.5, {"r": 1}, rss_mb=10.0)
    again = RunState(tmp_path)  # read back from disk
    assert again.done("step", k, [out]) and again.result("step") == {"r": 1}
    assert not again.done("step", key_of("stage", 1, {"a": 2}), [out])  # another input
    out.unlink()
    assert not again.done("step", k, [out])  # its output is gone
    assert again.stage_totals()["step"] == {"seconds": 1.5, "steps": 1, "peak_rss_mb": 10.0}


def test_stage_order_is_checked():
    validate_order(STAGES)
    with pytest.raises(ValueError, match="needs export"):
        validate_order((Stage("calibrate", ("export",)), Stage("export", ())))


def test_compiler_log_parsing_on_a_real_log():
    coverage, rejected, errors = parse_log(LOG.read_text())
    assert [(c.subgraph, c.ops_offloaded, c.ops_total, c.partitions) for c in coverage] == [(0, 1, 2, 1)]
    assert len(rejected) == 1
    r = rejected[0]
    assert (r.subgraph, r.op_index, r.op, r.qnn_error) == (0, 1, "FullyConnected", "3110")
    assert r.reason.startswith("Unsupported input/output datatypes requested for the HTP Op 'FullyConnected'")
    assert r.qnn_io == ["SFIXED_POINT_16[1,1,4,32]", "SFIXED_POINT_16[64,32]", "SFIXED_POINT_16[4,64]"]
    assert r.tensors[0] == "toy_x" and r.tensors[-1] == "toy_out_output"
    assert "QnnBackend_validateOpConfig failed 3110" in errors[0]
