"""The LM head of a 16-bit main applied on the host (runtime/int_head.py, runtime/scoring_main.py)."""

from __future__ import annotations

import copy

import numpy as np

from quantlab.runtime import int_head, scoring_main as sm
from quantlab.runtime.session import ArtifactSet
from quantlab.texts import default_eval_text
from tests.conftest import TINY_CACHE, TINY_PREFILL


def _window(arts: ArtifactSet) -> list[int]:
    return arts.encode(default_eval_text())[: TINY_CACHE - 1]


def test_the_host_head_gives_the_interpreters_logits_bit_for_bit(quantized, tmp_path):
    """int16_w8's scoring copy has no FULLY_CONNECTED at the end of decode and a host head; decode over a whole cache
    window through it gives the main's own logits (tolerance: none), chunk by chunk. The int8 main (int8 activations)
    keeps its head and is scored as it is, with no copy written."""
    folder, _ = quantized
    arts = ArtifactSet(folder, "int16_w8")
    scoring = sm.scoring_main(arts.path("int16_w8"), tmp_path / "scoring.tflite")
    assert scoring.head is not None and scoring.path == tmp_path / "scoring.tflite"
    assert _decode_fcs(scoring.path) == _decode_fcs(arts.path("int16_w8")) - 1
    table = scoring.head.table.numel()  # its bytes leave the copy: the head holds them
    assert arts.path("int16_w8").stat().st_size - scoring.path.stat().st_size >= table
    ids = _window(arts)
    want = list(arts.session().decode_chunks(ids, TINY_PREFILL))
    split = copy.copy(arts)
    split.main = scoring.model
    got = list(split.session().decode_chunks(ids, TINY_PREFILL, scoring.head))
    assert [c.shape for c in got] == [c.shape for c in want]
    assert all(np.array_equal(g, w) for g, w in zip(got, want))

    int8 = ArtifactSet(folder, "int8").path("int8")
    plain = sm.scoring_main(int8, tmp_path / "unused.tflite")
    assert plain.head is None and plain.path == int8 and not (tmp_path / "unused.tflite").exists()


def test_a_host_head_that_differs_from_the_interpreter_is_not_used(quantized, tmp_path, monkeypatch):
    """`agrees` passes the real head and fails one whose fixed-point scaling lacks the interpreter's rounding
    constant (truncates instead of rounding half up); `scoring_main` handed such a head scores with the head left
    in the model."""
    folder, _ = quantized
    arts = ArtifactSet(folder, "int16_w8")
    src = arts.path("int16_w8")
    good = sm.scoring_main(src, tmp_path / "good.tflite")
    assert good.head is not None and sm.agrees(arts.main, good.model, good.head)
    assert not sm.agrees(arts.main, good.model, _truncating(good.head))

    real_split = sm.split
    monkeypatch.setattr(sm, "split", lambda model, threads=1: _truncating(real_split(model, threads)))
    fallback = sm.scoring_main(src, tmp_path / "scoring.tflite")
    assert fallback.head is None and fallback.path == src


def _decode_fcs(path) -> int:
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model(str(path))
    sub = next(s.subgraphIndex for s in model.signatureDefs if s.signatureKey in (b"decode", "decode"))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return sum(codes[op.opcodeIndex] == fb.BuiltinOperator.FULLY_CONNECTED for op in model.subgraphs[sub].operators)


def _truncating(head: int_head.HostHead) -> int_head.HostHead:
    return int_head.HostHead(**{**head.__dict__, "half": head.half * 0})


def test_quantize_multiplier_is_tflites():
    """TFLite's QuantizeMultiplier on values whose Q31 form is known: 0.5 = 2^30 · 2^-31 (shift 0), 0.75, a value
    whose mantissa rounds up to 2^31 (carried into the shift), and 0."""
    q, shift = int_head.quantize_multiplier(np.array([0.5, 0.75, 1 - 2.0**-33, 0.0, 3e-4]))
    assert q[:4].tolist() == [1 << 30, 3 << 29, 1 << 30, 0]
    assert shift[:4].tolist() == [0, 0, 1, 0]
    assert abs(q[4] * 2.0 ** (int(shift[4]) - 31) - 3e-4) < 3e-4 * 2.0**-30
