"""Qualcomm HTP rules that the real compiler enforced in quantlab's runs (QNN via LiteRT's Qualcomm plugin,
onnxruntime-qnn 2.7.0 host libraries), so a user learns before compiling. Each rule cites what was measured.

- qnn-int16-act-matmul: a FULLY_CONNECTED whose "weights" are an int16 activation (what the converter makes of
  `q @ k_cache.transpose()`) is rejected by the HTP validator on SM8650 and SM8750: "Unsupported input/output
  datatypes requested for the HTP Op 'FullyConnected'" (QNN error 3110; requested SFIXED_POINT_16 × SFIXED_POINT_16).
  The op stays on the CPU and splits the NPU graph into partitions. The same product as a BATCH_MATMUL (int16 × int16)
  is accepted, which is why quantlab's export writes attention scores with `bmm_4d`.
- qnn-int16-wide-fc: an int16 FULLY_CONNECTED more than 65,536 outputs wide (Gemma3's 262,144-wide LM head) makes graph
  preparation fail for the whole model on SM8650/SM8750/SM8850: "could not create op:
  q::ConvLayer.opt.activations_from_vtcm ... QInt16Crouton_TCM", "graph prepare failed 12". quantlab's export splits
  the LM head into 65,536-wide blocks, which prepare.
- qnn-int8-rmsnorm: an `odml.rms_norm` composite with int8 input/output is rejected by the HTP validator on SM8750:
  "Unsupported input/output datatypes requested for the HTP Op 'RmsNorm'" (QNN error 3110; SFIXED_POINT_8 in and out).
  The plugin then inlines the composite's float decomposition instead (twice the ops). At int16 it maps to one RmsNorm,
  so quantlab's recipes keep the norms at int16 even in `int8` (as litert-torch's own NPU recipe does).
"""

from __future__ import annotations

from pathlib import Path

from quantlab.check.graph import Op, read_ops
from quantlab.check.litert_rules import Violation

MAX_INT16_FC_WIDTH = 65536
MEASURED_SOCS = "SM8650, SM8750"


def qnn_violations(ops: list[Op]) -> list[Violation]:
    found = []
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
        if a.dtype == "INT16" and b.dtype == "INT16" and not b.constant:
            found.append(Violation(
                "qnn-int16-act-matmul", op.signature, op.index, op.name, op.outputs[0].name,
                f"int16 fully-connected with activation weights: the HTP rejects it (QNN error 3110, measured on {MEASURED_SOCS}); "
                "it runs on the CPU and splits the NPU graph",
                "write it as a batched matmul (litert-torch's bmm_4d), quantize it to int8, or accept the split"))
        out = op.outputs[0] if op.outputs else None
        if out is not None and out.dtype == "INT16" and out.shape \
                and out.shape[-1] > MAX_INT16_FC_WIDTH:
            found.append(Violation(
                "qnn-int16-wide-fc", op.signature, op.index, op.name, out.name,
                f"int16 fully-connected {out.shape[-1]} outputs wide: graph preparation fails for the whole model "
                f"(could not create op ... QInt16Crouton_TCM; measured on SM8650/SM8750/SM8850)",
                f"split it into blocks of at most {MAX_INT16_FC_WIDTH} outputs (quantlab's export does) or use int8"))
    return found


def check_qnn(path: Path) -> list[Violation]:
    return qnn_violations(read_ops(Path(path)))
