"""The embedder a bundle ships: the variant's own, made to write main's `embeddings` input in main's dtype.

LiteRT-LM's NPU executor writes the embedder's output straight into main's input buffer, so an integer main needs an
embedder whose `embeddings` already come out quantized with main's scale. The shipped embedder (int8 table, float
output) gets one QUANTIZE op appended per signature — the same rounding quantlab's host runtime applies, so both
runtimes feed main the same integers. A float main takes the embedder as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from quantlab import layout, tflite_file


def bundle_embedder(src: Path, dst: Path, dtype: str, scale: float | None, zero_point: int = 0) -> Path:
    """Copy `src` to `dst`; for an integer `dtype` append QUANTIZE(embeddings → dtype, scale, zero_point)."""
    if scale is None or dtype == "float32":
        shutil.copyfile(src, dst)
        return Path(dst)
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = tflite_file.read(src)  # buffers as numpy arrays: one copy each when written back
    code = next((i for i, oc in enumerate(model.operatorCodes)
                 if fbu.get_builtin_code_from_operator_code(oc) == fb.BuiltinOperator.QUANTIZE), None)
    if code is None:
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = fb.BuiltinOperator.QUANTIZE, 114, 3
        model.operatorCodes.append(oc)
        code = len(model.operatorCodes) - 1
    for sd in model.signatureDefs:
        sg = model.subgraphs[sd.subgraphIndex]
        for tm in sd.outputs:
            name = tm.name.decode() if isinstance(tm.name, bytes) else tm.name
            if name != layout.EMBEDDINGS:
                continue
            src_t = sg.tensors[tm.tensorIndex]
            q = fb.TensorT()
            q.name, q.shape, q.buffer = f"{name}_{dtype}", list(src_t.shape), 0
            q.type = {"int16": fb.TensorType.INT16, "int8": fb.TensorType.INT8}[dtype]
            q.quantization = fb.QuantizationParametersT()
            q.quantization.scale, q.quantization.zeroPoint = [float(scale)], [int(zero_point)]
            sg.tensors.append(q)
            op = fb.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = code, [tm.tensorIndex], [len(sg.tensors) - 1]
            sg.operators.append(op)
            sg.outputs = [len(sg.tensors) - 1 if i == tm.tensorIndex else i for i in sg.outputs]
            tm.tensorIndex = len(sg.tensors) - 1
    return tflite_file.write(model, dst)
