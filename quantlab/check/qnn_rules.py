"""Qualcomm HTP rules that the real compiler (or its simulator, or a device report) enforced, so a user learns before
compiling or shipping. Each rule cites what was measured (QNN via LiteRT's Qualcomm plugin, onnxruntime-qnn 2.7.0 host
libraries and HTP simulator, QNN 2.51).

- qnn-int16-act-matmul: a FULLY_CONNECTED whose "weights" are an int16 activation (what the converter makes of
  `q @ k_cache.transpose()`) is rejected on SM8650 and SM8750: "Unsupported input/output datatypes requested for the
  HTP Op 'FullyConnected'" (QNN error 3110). The op stays on the CPU and splits the NPU graph; as a BATCH_MATMUL
  (litert-torch's bmm_4d, what quantlab's export writes) the same product is accepted.
- qnn-int16-wide-fc: an int16 FULLY_CONNECTED more than 65,536 outputs wide over several rows (Gemma3's LM head in a
  128-token prefill) makes graph preparation fail for the whole model on SM8650/SM8750/SM8850: "could not create op:
  q::ConvLayer.opt.activations_from_vtcm ... QInt16Crouton_TCM", "graph prepare failed 12". One row (decode) compiles.
- qnn-int8-rmsnorm: an `odml.rms_norm` composite with int8 input/output is rejected on SM8750 (QNN error 3110); the
  compiler inlines its float decomposition instead. quantlab's recipes keep the norms at int16.
- qnn-int16-add-bcast: an int16 ADD of two activations shaped [..., R, 1], R ≥ 8, feeding a MUL/ADD that broadcasts
  the other way, is computed wrongly or crashes the HTP simulator (SM8450–SM8850; also through onnxruntime's own QNN
  EP). quantlab's residual rotation used to build it in every int16 prefill; it is now written without it.
- qnn-prefill-mask-size: a prefill attention-mask ADD over more than 1 MiB (2 B × heads × T × (C + T)) loses every
  prefill chunk after the first on Qualcomm devices (LiteRT-LM #3508, litert-torch #1184 and PR #1226; not
  reproduced by the simulator). quantlab's default prefill of 64 keeps the 1280-slot cache under it.
- qnn-blockwise-weight: a FULLY_CONNECTED weight with blockwise quantization (what ai-edge-quantizer writes for
  BLOCKWISE_32..256 granularity) stops the whole compile: "ERROR: [qnn_compose_graph.cc:320] Unsupported quantization
  type." (SM8650/SM8750/SM8850); LiteRT's CPU kernels do not run it with int16 activations either.
"""

from __future__ import annotations

from pathlib import Path

import math

from quantlab.check.graph import Op, read_ops
from quantlab.check.litert_rules import Violation

MAX_INT16_FC_WIDTH = 65536
MEASURED_SOCS = "SM8650, SM8750"
# LiteRT-LM #3508, litert-torch #1184 / PR #1226: on Qualcomm HTP (SM8750/SM8850, QAIRT 2.47) a prefill attention-mask
# ADD whose operand exceeds 1 MiB pairs rows with the wrong operand rows, so every prefill chunk after the first is
# lost: 2 B × heads × T × (C + T) ≤ 1,048,576 B (Gemma3 270M/1B, 4 heads, T = 128: cache ≤ 896).
MAX_PREFILL_MASK_ADD_BYTES = 1 << 20
# QNN HTP 2.51 (onnxruntime-qnn 2.7.0's simulator, SM8450–SM8850; also when ORT's own QNN EP prepares the same ONNX
# graph): an int16 ADD of two activations shaped [..., R, 1] with R ≥ 8, consumed by a MUL or ADD whose other operand
# is [..., 1, C], computes wrong values or crashes. R ≤ 7 is exact.
ADD_BCAST_MIN_ROWS = 8
_BYTES = {"INT8": 1, "INT16": 2}


def qnn_violations(ops: list[Op]) -> list[Violation]:
    found = _mask_add_violations(ops) + _add_bcast_violations(ops)
    for op in ops:
        if op.name == "STABLEHLO_COMPOSITE" and op.outputs and op.outputs[0].dtype == "INT8":
            found.append(Violation(
                "qnn-int8-rmsnorm", op.signature, op.index, op.name, op.outputs[0].name,
                "int8 RMSNorm composite: the HTP rejects RmsNorm at int8 (QNN error 3110, measured on SM8750) and the "
                "compiler inlines its float decomposition instead",
                "quantize the norms' composite input/output at 16 bits (what quantlab's recipes do)"))
        if op.name != "FULLY_CONNECTED" or len(op.inputs) < 2:
            continue
        a, b = op.inputs[0], op.inputs[1]
        if b.block_size:
            found.append(Violation(
                "qnn-blockwise-weight", op.signature, op.index, op.name, op.outputs[0].name,
                f"fully-connected weight quantized in blocks of {b.block_size}: the Qualcomm plugin stops the whole "
                "compile (\"Unsupported quantization type\", measured on SM8650/SM8750/SM8850)",
                "quantize the weights per channel (CHANNELWISE; quantlab's int16_w4 scheme)"))
        if a.dtype == "INT16" and b.dtype == "INT16" and not b.constant:
            found.append(Violation(
                "qnn-int16-act-matmul", op.signature, op.index, op.name, op.outputs[0].name,
                f"int16 fully-connected with activation weights: the HTP rejects it (QNN error 3110, measured on {MEASURED_SOCS}); "
                "it runs on the CPU and splits the NPU graph",
                "write it as a batched matmul (litert-torch's bmm_4d), quantize it to int8, or accept the split"))
        out = op.outputs[0] if op.outputs else None
        if out is not None and out.dtype == "INT16" and len(out.shape) >= 2 \
                and out.shape[-1] > MAX_INT16_FC_WIDTH and math.prod(out.shape[:-1]) > 1:
            found.append(Violation(
                "qnn-int16-wide-fc", op.signature, op.index, op.name, out.name,
                f"int16 fully-connected {out.shape[-1]} outputs wide over {math.prod(out.shape[:-1])} rows: graph "
                "preparation fails for the whole model (could not create op ... QInt16Crouton_TCM; measured with "
                "Gemma3's LM head in a 128-token prefill on SM8650/SM8750/SM8850; one row, as in decode, compiles)",
                f"keep the LM head out of prefill (quantlab's export does), split it into blocks of at most "
                f"{MAX_INT16_FC_WIDTH} outputs, or use int8"))
    return found


def _mask_add_violations(ops: list[Op]) -> list[Violation]:
    """Prefill ADDs that apply an attention mask to scores larger than the HTP handles (#3508)."""
    found = []
    for op in ops:
        if op.name != "ADD" or not op.signature.startswith("prefill") or not op.outputs:
            continue
        out = op.outputs[0]
        if out.dtype not in ("INT16", "INT8") or not any("mask_" in t.name for t in op.inputs):
            continue  # (the reported failure is of integer masks; a float graph is not what the HTP runs)
        size = math.prod(out.shape) * _BYTES[out.dtype]
        if size > MAX_PREFILL_MASK_ADD_BYTES:
            found.append(Violation(
                "qnn-prefill-mask-size", op.signature, op.index, op.name, out.name,
                f"attention-mask ADD of {size:,} B {list(out.shape)} in prefill: above 1 MiB the Qualcomm HTP pairs it "
                "with the wrong rows and every prefill chunk after the first is lost (LiteRT-LM #3508, litert-torch "
                "#1184 and PR #1226: 2 B x heads x prefill x (cache + prefill) <= 1,048,576 B)",
                "export with a shorter --prefill-len (64 at cache 1280 for 4 heads) or a shorter --cache-len "
                "(896 at prefill 128)"))
    return found


def _add_bcast_violations(ops: list[Op]) -> list[Violation]:
    """int16 ADD [.., R >= 8, 1] feeding a bidirectionally broadcasting MUL/ADD (the QNN HTP 2.51 bug)."""
    found = []
    consumers: dict[tuple[str, str], list[Op]] = {}
    for op in ops:
        for t in op.inputs:
            consumers.setdefault((op.signature, t.name), []).append(op)
    for op in ops:
        if op.name != "ADD" or len(op.inputs) != 2 or any(t.constant for t in op.inputs) or not op.outputs:
            continue
        out = op.outputs[0]
        if out.dtype != "INT16" or len(out.shape) < 2 or out.shape[-1] != 1 or \
                math.prod(out.shape[:-1]) < ADD_BCAST_MIN_ROWS:
            continue
        for c in consumers.get((op.signature, out.name), []):
            other = [t for t in c.inputs if t.name != out.name]
            if c.name in ("MUL", "ADD") and other and other[0].shape and other[0].shape[-1] > 1 \
                    and math.prod(other[0].shape[:-1]) == 1:
                found.append(Violation(
                    "qnn-int16-add-bcast", op.signature, op.index, op.name, out.name,
                    f"int16 ADD {list(out.shape)} feeding a broadcast {c.name} (op {c.index}) with "
                    f"{list(other[0].shape)}: QNN HTP 2.51 computes it wrong or crashes (measured on its simulator, "
                    "SM8450-SM8850; rows <= 7 are exact)",
                    "multiply each addend by the broadcast operand first and add at full width (quantlab's rotation "
                    "does), or keep that ADD at int8/float"))
    return found


def check_qnn(path: Path) -> list[Violation]:
    return qnn_violations(read_ops(Path(path)))
