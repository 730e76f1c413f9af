"""The LM head of a 16-bit main computed on the host, a chunk of positions at once, bit for bit as LiteRT computes it.

Under 16-bit activations the decode signature ends with a FULLY_CONNECTED of the int16 hidden state × the int8
vocabulary table. LiteRT runs it with its reference integer kernel, one position per call: on the 270M about 40 % of
every decode call (262,144 × 640 multiply-adds). Scoring needs the logits at every position, and no later position
reads the head's output, so a scorer can run decode without the head, keep each position's head input (int16), and
apply the head to a whole chunk of positions in one int8 matrix product.

The host head is exact, not an approximation: the int16 input is split into its two bytes, each an int8 product with
the table accumulated in int32 (`torch._int_mm`; no overflow below a hidden size of 2^16), recombined in int64; the
accumulator is then scaled to int16 with TFLite's fixed-point arithmetic (per-channel Q31 multiplier and shift from
`QuantizeMultiplier`, two roundings half up, as the interpreter's own outputs show). `split` checks the head against
the interpreter on one decode call before handing it out, and hands out nothing if they differ anywhere.

Choose it for scoring (evaluate, sensitivity rows, search candidates): the logits are the model's own. Speed figures,
checks, compiles and bundles use the artifact as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantlab import layout
from quantlab.runtime.litert_model import TensorSpec


@dataclass(frozen=True)
class HostHead:
    """The decode signature's final FULLY_CONNECTED: int16 input [n, depth] → logits [n, vocab]."""

    table: object  # torch.int8 [vocab, depth], the model's own table
    colsum: object  # torch.int64 [vocab]: 128 × each row's sum (the low byte's offset)
    bias: object | None  # torch.int64 [vocab]
    multiplier: object  # torch.int64 [vocab]: Q31 multiplier per channel
    left: object  # torch.int64 [vocab]: left shift (positive exponents)
    right: object  # torch.int64 [vocab]: rounding right shift (negative exponents)
    half: object  # torch.int64 [vocab]: half of the right shift's unit (its rounding)
    logits: TensorSpec  # the logits output the head replaces (its scale and zero point)
    threads: int = 1

    def raw(self, x: np.ndarray) -> np.ndarray:
        """int16 head inputs [n, depth] → int16 logits [n, vocab], as the model's logits output holds them."""
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            xi = torch.from_numpy(np.ascontiguousarray(x, np.int16)).to(torch.int32)
            hi, lo = (xi >> 8).to(torch.int8), ((xi & 255) - 128).to(torch.int8)
            acc = torch._int_mm(hi, self.table.t()).to(torch.int64) * 256
            acc += torch._int_mm(lo, self.table.t())
            acc += self.colsum
            if self.bias is not None:
                acc += self.bias
            acc <<= self.left
            acc *= self.multiplier
            acc += 1 << 30
            acc >>= 31
            acc += self.half
            acc >>= self.right
            acc += self.logits.zero_point
            return acc.clamp_(-32768, 32767).to(torch.int16).numpy()
        finally:
            torch.set_num_threads(before)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """int16 head inputs [n, depth] → float32 logits [n, vocab] (dequantized as the host dequantizes outputs)."""
        return self.logits.dequantize(self.raw(x))


def quantize_multiplier(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's `QuantizeMultiplier`, per channel: m = q · 2^shift with q a Q31 integer (rounded half away from 0)."""
    frac, shift = np.frexp(np.asarray(m, np.float64))
    q = (np.trunc(np.abs(frac) * (1 << 31) + 0.5) * np.sign(frac)).astype(np.int64)
    full = q == (1 << 31)
    q[full] //= 2
    shift = shift.astype(np.int64) + full
    small = shift < -31
    q[small], shift[small] = 0, 0
    return q, shift


def split(model, threads: int = 1) -> HostHead | None:
    """Take the head out of `model` (a `ModelT`, changed in place): its decode signature then outputs the head's int16
    input under the name `logits`. Returns the head, or None with `model` unchanged when decode does not end in a
    FULLY_CONNECTED of int16 input, int8 table and int16 output without a fused activation (FP32 mains, int8
    activations, 4-bit or blockwise tables)."""
    import torch
    from ai_edge_litert import schema_py_generated as fb

    site = find_head(model)
    if site is None:
        return None
    x, w, b, y = site.tensors()
    if (x.type, w.type, y.type) != (fb.TensorType.INT16, fb.TensorType.INT8, fb.TensorType.INT16):
        return None
    if b is not None and (b.type != fb.TensorType.INT64 or model.buffers[b.buffer].data is None):
        return None
    table = model.buffers[w.buffer].data
    if table is None or not len(table) or len(w.shape) != 2 or any(_q(t) is None for t in (x, w, y)):
        return None
    if w.quantization.details is not None or np.any(_zps(w)) or np.any(_zps(x)) or w.shape[1] >= 1 << 16:
        return None
    vocab, depth = (int(s) for s in w.shape)
    in_scale, out_scale = float(x.quantization.scale[0]), float(y.quantization.scale[0])
    w_scale = np.broadcast_to(np.asarray(w.quantization.scale, np.float64), (vocab,))
    q, shift = quantize_multiplier(np.float64(in_scale) * w_scale / np.float64(out_scale))
    tab = torch.from_numpy(np.frombuffer(table, np.int8).reshape(vocab, depth).copy())
    spec = TensorSpec(layout.LOGITS, tuple(int(s) for s in y.shape), np.dtype(np.int16), out_scale,
                      int(_zps(y)[0]) if len(_zps(y)) else 0)
    head = HostHead(
        table=tab, colsum=tab.sum(1, dtype=torch.int64) * 128,
        bias=None if b is None else torch.from_numpy(np.frombuffer(model.buffers[b.buffer].data, np.int64).copy()),
        multiplier=torch.from_numpy(q), left=torch.from_numpy(np.maximum(shift, 0)),
        right=torch.from_numpy(np.maximum(-shift, 0)), half=torch.from_numpy((1 << np.maximum(-shift, 0)) >> 1),
        logits=spec, threads=threads)
    cut_head(model, site)
    return head


@dataclass(frozen=True)
class HeadSite:
    """Where decode's LM head is in a `ModelT`: its subgraph, its `logits` output, the operator indices from the head's
    FULLY_CONNECTED to that output (head_ops), and the FC's input tensor indices (input, table[, bias])."""

    subgraph: object
    output: object
    ops: list
    inputs: list

    def tensors(self) -> tuple:
        """The FC's input, table, bias (None without one) and output tensors."""
        sg, ins = self.subgraph, self.inputs
        b = sg.tensors[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None
        return sg.tensors[ins[0]], sg.tensors[ins[1]], b, sg.tensors[int(sg.operators[self.ops[0]].outputs[0])]


def find_head(model) -> HeadSite | None:
    """Decode's LM head, or None when decode does not end in a FULLY_CONNECTED (and RESHAPEs) without activation."""
    from ai_edge_litert import schema_py_generated as fb

    sig, out = decode_logits(model)
    if out is None:
        return None
    sg = model.subgraphs[sig.subgraphIndex]
    tail = head_ops(model, sg, out.tensorIndex, fb)
    if tail is None:
        return None
    return HeadSite(sg, out, tail, [int(i) for i in sg.operators[tail[0]].inputs])


def cut_head(model, site: HeadSite) -> None:
    """Make decode end at the head's input (in place): the FC and the reshapes after it go, its input becomes the
    signature's `logits` output, and the table's bytes leave the model unless another op reads them."""
    sg, ins, out = site.subgraph, site.inputs, site.output
    for i in sorted(site.ops, reverse=True):
        del sg.operators[i]
    sg.outputs = [ins[0] if int(t) == out.tensorIndex else int(t) for t in sg.outputs]
    out.tensorIndex = ins[0]
    table = sg.tensors[ins[1]].buffer
    read = {int(sub.tensors[i].buffer) for sub in model.subgraphs for o in sub.operators for i in o.inputs if i >= 0}
    if table not in read:  # no other op (of any signature) reads the table
        model.buffers[table].data = None


def head_ops(model, sg, logits: int, fb) -> list[int] | None:
    """The operator indices from the head's FULLY_CONNECTED to the op writing `logits` (the FC, then any RESHAPEs
    that only reshape it, as in the tiny config), or None when decode does not end that way."""
    producer = {int(t): i for i, op in enumerate(sg.operators) for t in op.outputs}
    tail, t = [], logits
    while t in producer:
        op = sg.operators[producer[t]]
        tail.insert(0, producer[t])
        if _is_fc(model, op, fb):
            return tail
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != fb.BuiltinOperator.RESHAPE:
            return None
        src = int(op.inputs[0])
        if _scale(sg.tensors[src]) != _scale(sg.tensors[t]):
            return None
        t = src
    return None


def decode_logits(model) -> tuple:
    """The decode signature of a `ModelT` and its `logits` output, or (None, None)."""
    sig = next((s for s in model.signatureDefs if _text(s.signatureKey) == layout.DECODE), None)
    out = None if sig is None else next((o for o in sig.outputs if _text(o.name) == layout.LOGITS), None)
    return (sig, out) if out is not None else (None, None)


def _scale(t) -> tuple:
    q = t.quantization
    if q is None or q.scale is None:
        return ()
    zps = q.zeroPoint if q.zeroPoint is not None else []
    return tuple(np.asarray(q.scale).tolist()), tuple(np.asarray(zps).tolist())


def _is_fc(model, op, fb) -> bool:
    code = model.operatorCodes[op.opcodeIndex]
    if max(code.builtinCode, code.deprecatedBuiltinCode) != fb.BuiltinOperator.FULLY_CONNECTED:
        return False
    opts = op.builtinOptions
    return opts is None or (opts.fusedActivationFunction == fb.ActivationFunctionType.NONE
                            and getattr(opts, "weightsFormat", 0) == 0)


def _q(t):
    q = t.quantization
    return None if q is None or q.scale is None or not len(q.scale) else q


def _zps(t) -> np.ndarray:
    return np.asarray(t.quantization.zeroPoint if t.quantization.zeroPoint is not None else [], np.int64)


def _text(s) -> str:
    return s.decode() if isinstance(s, bytes) else str(s)
