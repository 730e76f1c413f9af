"""What the scorers run in place of a main: the same logits, computed faster on this CPU.

Two rewrites, each exact: 4-bit tables stored as int8 (widen_int4.py: LiteRT unpacks the nibbles at every call) and
the LM head of a 16-bit main taken out of decode and applied on the host to a chunk of positions at once
(int_head.py). A main neither applies to (FP32, int8 activations) is run as it is. Only scoring uses them: sizes,
checks, compiles, bundles and speed figures are the artifact's own.
"""

from __future__ import annotations

import logging
import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlab import layout, tflite_file
from quantlab.runtime.int_head import HostHead, split
from quantlab.procmon import cores
from quantlab.runtime.litert_model import LiteRTModel
from quantlab.runtime.widen_int4 import has_int4, widen

log = logging.getLogger(__name__)


@dataclass
class ScoringMain:
    """The interpreter model the scorer runs, its file (the main itself, or a copy the caller deletes when done),
    and the head it applies on the host (None: decode returns the logits)."""

    model: LiteRTModel
    path: Path
    head: HostHead | None


def scoring_main(src: Path, dst: Path, threads: int | None = None, host_head: bool = True) -> ScoringMain:
    """`src`'s scoring copy, written to `dst` where it differs from `src`. `host_head=False` keeps the head in the
    model (used when the host head disagrees with the interpreter on the check below)."""
    src, dst = Path(src), Path(dst)
    threads = threads or cores()
    want_head = host_head and _ends_in_int16_head(src)
    if not want_head and not has_int4(src):  # most FP32 and int8 mains: no object tree read (4 GB at the 1B)
        return ScoringMain(LiteRTModel(src, threads), src, None)
    model = tflite_file.read(src)
    widened = widen(model)
    head = split(model, threads) if want_head else None
    if not widened and head is None:
        return ScoringMain(LiteRTModel(src, threads), src, None)
    scoring = LiteRTModel(tflite_file.write(model, dst), threads)
    del model
    if head is not None and not agrees(LiteRTModel(src, threads), scoring, head):
        log.warning("%s: the host LM head differs from LiteRT's; scoring with the head in the model", src.name)
        del scoring  # the interpreter maps `dst`: let go of it before it is written again
        return scoring_main(src, dst, threads, host_head=False)
    return ScoringMain(scoring, dst, head)


def agrees(full: LiteRTModel, split_model: LiteRTModel, head: HostHead, seed: int = 0) -> bool:
    """Whether one decode call gives the same int16 logits through `full` and through `split_model` + `head`:
    random embeddings, RoPE and K/V caches (in range of their quantization), no mask."""
    rng = np.random.default_rng(seed)
    feed = {}
    for name, spec in full.inputs[layout.DECODE].items():
        x = np.zeros(spec.shape, np.float32) if name in (layout.MASK_GLOBAL, layout.MASK_LOCAL) else (
            rng.uniform(-1, 1, spec.shape).astype(np.float32))
        feed[name] = spec.quantize(x)
    want = full.run(layout.DECODE, {}, raw=feed, raw_outputs=(layout.LOGITS,))[layout.LOGITS]
    got = split_model.run(layout.DECODE, {}, raw=feed, raw_outputs=(layout.LOGITS,))[layout.LOGITS]
    return np.array_equal(head.raw(got.reshape(1, -1)), want.reshape(1, -1))


def _ends_in_int16_head(path: Path) -> bool:
    """Whether decode's `logits` come from a FULLY_CONNECTED with int16 input and an int8 or int4 table, read
    through the flatbuffer's accessors (no copy of its buffers)."""
    from ai_edge_litert import schema_py_generated as fb

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        model = fb.Model.GetRootAs(mm, 0)
        for s in range(model.SignatureDefsLength()):
            sig = model.SignatureDefs(s)
            if (sig.SignatureKey() or b"").decode() != layout.DECODE:
                continue
            outs = [sig.Outputs(i) for i in range(sig.OutputsLength())]
            logits = next((o.TensorIndex() for o in outs if (o.Name() or b"").decode() == layout.LOGITS), None)
            sg = model.Subgraphs(sig.SubgraphIndex())
            producer = {sg.Operators(k).Outputs(j): k for k in range(sg.OperatorsLength())
                        for j in range(sg.Operators(k).OutputsLength())}
            t = logits
            while t in producer:  # back from the logits through RESHAPEs to the op computing them
                op = sg.Operators(producer[t])
                code = model.OperatorCodes(op.OpcodeIndex())
                kind = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                if kind == fb.BuiltinOperator.FULLY_CONNECTED:
                    x, w = sg.Tensors(op.Inputs(0)), sg.Tensors(op.Inputs(1))
                    # a 4-bit table qualifies too: widen() stores it as int8 before split() reads it
                    return x.Type() == fb.TensorType.INT16 and w.Type() in (fb.TensorType.INT8, fb.TensorType.INT4)
                if kind != fb.BuiltinOperator.RESHAPE:
                    return False
                t = op.Inputs(0)
    return False
