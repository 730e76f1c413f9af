"""A read-only view of a .tflite flatbuffer (through LiteRT's own flatbuffer tools): ops with their tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlab import layout
from quantlab.errors import UserError

QUANT_OPS = {"QUANTIZE", "DEQUANTIZE"}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # FLOAT32, INT8, INT16, INT32, ...
    shape: tuple[int, ...]
    constant: bool
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    block_size: int = 0  # > 0: blockwise quantization (scales per block of the input dim, in a separate tensor)

    @property
    def quantized(self) -> bool:
        return len(self.scales) > 0


@dataclass(frozen=True)
class Op:
    signature: str
    index: int
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


def read_ops(path: Path) -> list[Op]:
    """Every op of every signature's subgraph (all subgraphs if the model has no signatures). Composite bodies (e.g.
    `odml.rms_norm`'s decomposition, run only by the CPU) are left out. Not a LiteRT model: UserError."""
    from ai_edge_litert.tools import flatbuffer_utils

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; pass a .tflite file (e.g. {path}/<name>_main_int8.tflite)")
    if not path.is_file():
        raise UserError(f"{path} does not exist; pass a .tflite file")
    try:
        model = flatbuffer_utils.read_model(str(path))
    except Exception as exc:  # the flatbuffer reader raises assorted errors on garbage
        raise UserError(f"{path} is not a valid LiteRT model ({type(exc).__name__}); re-create it") from None
    names = {sd.subgraphIndex: sd.signatureKey.decode() for sd in (model.signatureDefs or [])}
    ops: list[Op] = []
    for sg_index, sg in enumerate(model.subgraphs):
        if names and sg_index not in names:
            continue
        sig = names.get(sg_index, f"subgraph_{sg_index}")
        tensors = [_tensor(t, model.buffers) for t in sg.tensors]
        for i, op in enumerate(sg.operators or []):
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) or f"opcode_{op.opcodeIndex}"
            if name == "CUSTOM":  # name custom ops by their code, e.g. DISPATCH_OP for a compiled NPU partition
                code = model.operatorCodes[op.opcodeIndex].customCode
                name = code.decode() if code else name
            ins = tuple(tensors[j] for j in op.inputs if j >= 0)
            outs = tuple(tensors[j] for j in op.outputs if j >= 0)
            ops.append(Op(sig, i, name, ins, outs))
    return ops


def signature_io(path: Path) -> dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]]:
    """Per signature: (inputs, outputs) by their signature names, read from the flatbuffer (no interpreter: a 4 GB
    main costs nothing to inspect)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    out = {}
    for sd in model.signatureDefs or []:
        sg = model.subgraphs[sd.subgraphIndex]
        pick = lambda defs: {d.name.decode(): _tensor(sg.tensors[d.tensorIndex], model.buffers)  # noqa: E731
                             for d in defs or []}
        out[sd.signatureKey.decode()] = (pick(sd.inputs), pick(sd.outputs))
    return out


def io_dtypes(path: Path) -> dict[str, str]:
    """dtype of a main's inputs and outputs by kind (embeddings, masks, rope, caches, logits), from decode: the
    signature with logits."""
    ins, outs = signature_io(path)[layout.DECODE]
    pick = lambda t: t.dtype.lower()  # noqa: E731
    return {"embeddings": pick(ins[layout.EMBEDDER_OUTPUT]), "masks": pick(ins["mask_global"]),
            "rope": pick(ins[layout.ROPE[0]]), "kv_cache": pick(ins[layout.kv_cache("k", 0)]),
            "logits": pick(outs[layout.LOGITS])}


def _tensor(t, buffers) -> Tensor:
    from ai_edge_litert.tools import flatbuffer_utils

    q = t.quantization
    scales = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else []))
    zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else []))
    buf = buffers[t.buffer] if t.buffer < len(buffers) else None
    constant = buf is not None and (
        (buf.data is not None and len(buf.data) > 0) or (getattr(buf, "offset", 0) or 0) > 1
    )
    shape = tuple(int(s) for s in (t.shape if t.shape is not None else np.array([])))
    details = getattr(q, "details", None) if q is not None else None
    block = int(getattr(details, "blockSize", 0) or 0)
    return Tensor(t.name.decode(), flatbuffer_utils.type_to_name(t.type), shape, constant, scales, zps, block)
