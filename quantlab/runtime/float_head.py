"""The LM head of an FP32 main taken out of decode, so that calibration computes the logits' range on the host.

Calibration runs decode at every position (capture.py), and decode is the only signature with the LM head: a
FULLY_CONNECTED of the hidden state × the vocabulary table (262,144 rows), one position per call. On the 270M the table
is 63 % of the weights decode reads, on the 1B shape 30 %. What calibration needs from the head is only its output's
range, and no later op reads it, so a copy of the main whose decode ends at the head's input can be calibrated
instead, its decode outputs kept, and the head applied on the host to all of a window's positions in one matrix
product (`FloatHead.range`).

Measured on the 270M (2 windows, 2,598 decode and 40 prefill samples, `bench/calibration_bench.py DIR --compare
head`): 217.7 → 180.8 s (×0.83), peak RSS 5.07 → 5.69 GB (the host's copy of the table). Most of a calibration decode
call is not the head's bytes but the profiler's per-op work and the Python around each sample. Mains of 2 GiB or more
(the 1B shape) keep the head in the model (WRITABLE_BYTES).

Choose it for min/max ranges (the default): the range is a min and a max over positions, which the order of
positions does not change. Every other tensor's range is the copy's own, computed by the same kernels; the head's
output range is computed by torch instead of XNNPACK, so it can differ in the last bits of float32 (the test states the
tolerance). A moving-average range depends on the order of samples and keeps the head in the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlab import tflite_file
from quantlab.runtime.int_head import cut_head, find_head


# The LiteRT tools write a model as one flatbuffer, which cannot pass 2 GiB: a larger main (the 1B shape's 4 GB FP32
# main) keeps its head in the model.
WRITABLE_BYTES = 2**31


@dataclass(frozen=True)
class FloatHead:
    """The head removed from a float main: table [vocab, depth] (float32), bias [vocab] or None, and the names of the
    tensors from its output to the `logits` output (the FC's, then any RESHAPEs'; they hold the same values)."""

    table: np.ndarray
    bias: np.ndarray | None
    names: tuple[str, ...]

    def range(self, x: np.ndarray, chunk: int = 256) -> tuple[float, float]:
        """Min and max of the logits for head inputs `x` [n, depth], `chunk` positions per product (float32)."""
        import torch

        w = torch.from_numpy(self.table)
        b = None if self.bias is None else torch.from_numpy(self.bias)
        x = np.ascontiguousarray(x.reshape(-1, self.table.shape[1]), np.float32)
        lo, hi = np.inf, -np.inf
        for s in range(0, len(x), chunk):
            y = torch.from_numpy(x[s:s + chunk]) @ w.T
            if b is not None:
                y += b
            lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
        return lo, hi


def headless_copy(src: Path, dst: Path) -> FloatHead | None:
    """Write `src` without its decode LM head to `dst` (decode's `logits` output is then the head's input) and return
    the head; None, and nothing written, when decode does not end in a float32 FULLY_CONNECTED without a fused
    activation (a quantized main, or another graph), or when `src` is too large to write back (WRITABLE_BYTES)."""
    from ai_edge_litert import schema_py_generated as fb

    if Path(src).stat().st_size >= WRITABLE_BYTES:
        return None
    model = tflite_file.read(src)
    site = find_head(model)
    if site is None:
        return None
    sg = site.subgraph
    x, w, b, _ = site.tensors()
    tensors = [t for t in (x, w, b) if t is not None]
    table = model.buffers[w.buffer].data
    if (any(t.type != fb.TensorType.FLOAT32 for t in tensors) or table is None or not len(table) or len(w.shape) != 2
            or (b is not None and model.buffers[b.buffer].data is None)):
        return None
    vocab, depth = (int(s) for s in w.shape)
    names = tuple(_name(sg.tensors[int(sg.operators[i].outputs[0])]) for i in site.ops)
    head = FloatHead(table=np.frombuffer(table, np.float32).reshape(vocab, depth).copy(),
                     bias=None if b is None else np.frombuffer(model.buffers[b.buffer].data, np.float32).copy(),
                     names=names)
    cut_head(model, site)
    tflite_file.write(model, dst)
    return head


def _name(t) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)
