"""A copy of a main whose 4-bit weights are stored as int8 holding the same values: faster to score on this CPU.

LiteRT's CPU kernels for 4-bit weights under 16-bit activations unpack the packed nibbles into int8 at every call,
then run the int16 × int8 kernel; on the 270M that makes decode 2.5× slower than the same weights stored as int8
(bench/widen_int4_bench.py). Unpacking once, ahead of time, gives the kernel the same int8 values, scales and zero
points, so the logits are the same bit for bit (tests/test_quantize.py checks it on the tiny int16_w4;
bench/widen_int4_bench.py on the 270M). Only the scorers use the copy: sizes, checks, compiles, bundles and the speed
figures are the artifact's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quantlab import tflite_file


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    """LiteRT's dense int4 layout (two values per byte, the first in the low nibble) as int8 values."""
    b = np.asarray(packed, np.uint8)
    low = ((b & 0x0F).astype(np.int16) ^ 8) - 8
    high = ((b >> 4).astype(np.int16) ^ 8) - 8
    return np.stack([low, high], axis=-1).reshape(-1)[:count].astype(np.int8)


def scoring_copy(src: Path, dst: Path) -> Path:
    """`dst` holding `src` with every 4-bit constant tensor stored as int8 (same values and quantization), or `src`
    itself when it has no 4-bit tensor or has one whose quantization is not per-tensor or per-channel (a blockwise
    one: the int8 kernel would not read its scales). runtime/scoring_main.py also takes the LM head out."""
    if not has_int4(src):  # most mains: a scan of the tensor types, not the whole object tree (1-2 s at the 270M)
        return Path(src)
    model = tflite_file.read(src)
    return tflite_file.write(model, dst) if widen(model) else Path(src)


def widen(model) -> bool:
    """Store every 4-bit constant tensor of `model` (a `ModelT`, changed in place) as int8; False, with `model`
    unchanged, when it has none or one that cannot be widened (blockwise, or computed at run time)."""
    from ai_edge_litert import schema_py_generated as fb

    int4 = [t for sg in model.subgraphs for t in sg.tensors if t.type == fb.TensorType.INT4]
    if not int4 or any(t.quantization is None or t.quantization.details is not None for t in int4):
        return False
    for t in int4:
        buf = model.buffers[t.buffer]
        if buf.data is None or not len(buf.data):
            return False  # a 4-bit tensor computed at run time: nothing to unpack ahead of time
    done: set[int] = set()
    for t in int4:
        t.type = fb.TensorType.INT8
        if t.buffer not in done:  # a buffer the signatures share is widened once
            buf = model.buffers[t.buffer]
            buf.data = unpack_int4(buf.data, int(np.prod(t.shape))).view(np.uint8)
            done.add(t.buffer)
    return True


def has_int4(path: Path) -> bool:
    """Whether any tensor of the model is 4-bit, read through the flatbuffer's accessors (no copy of its buffers)."""
    import mmap

    from ai_edge_litert import schema_py_generated as fb

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        model = fb.Model.GetRootAs(mm, 0)
        for i in range(model.SubgraphsLength()):
            sg = model.Subgraphs(i)
            if any(sg.Tensors(j).Type() == fb.TensorType.INT4 for j in range(sg.TensorsLength())):
                return True
    return False
