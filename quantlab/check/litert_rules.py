"""LiteRT kernel rules, checked on the flatbuffer, plus a real interpreter load that finds missing kernels.

Rules (each violation names the tensor and the fix):
- int16-zero-point: int16 activations must be symmetric (zero point 0); LiteRT's int16 kernels assume it.
- asymmetric-weight: constant int8/int16 weights must be symmetric (all zero points 0).
- float-island: in a graph that is otherwise integer, an op computing in float32 (between DEQUANTIZE and QUANTIZE)
  runs on the CPU at float cost and splits an NPU graph.
- no-kernel: LiteRT cannot prepare an op for its dtypes (found by really allocating the model in the interpreter).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from quantlab.check.graph import QUANT_OPS, Op, read_ops

# Ops whose constant operand is a weight (LiteRT's integer kernels for these need symmetric weights). Constant operands
# of elementwise ops (ADD, MUL, ...) are quantized like activations and may be asymmetric.
WEIGHT_OPS = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL", "EMBEDDING_LOOKUP", "GATHER"}


@dataclass(frozen=True)
class Violation:
    rule: str
    signature: str
    op_index: int
    op: str
    tensor: str
    detail: str
    fix: str

    def line(self) -> str:
        return f"[{self.rule}] {self.signature} op {self.op_index} {self.op}: {self.tensor}: {self.detail}. Fix: {self.fix}"

    def as_dict(self) -> dict:
        return asdict(self)


def check_litert(path: Path) -> list[Violation]:
    ops = read_ops(path)
    found: list[Violation] = []
    seen: set[tuple[str, str, str]] = set()
    integer_graph = any(t.dtype in ("INT8", "INT16") and not t.constant for op in ops for t in op.outputs)

    def add(rule: str, op: Op, tensor: str, detail: str, fix: str) -> None:
        key = (rule, op.signature, tensor)
        if key not in seen:
            seen.add(key)
            found.append(Violation(rule, op.signature, op.index, op.name, tensor, detail, fix))

    for op in ops:
        for t in op.inputs + op.outputs:
            if t.dtype == "INT16" and not t.constant and any(z != 0 for z in t.zero_points):
                add("int16-zero-point", op, t.name, f"int16 activation with zero point {t.zero_points[0]}",
                    "quantize int16 activations symmetrically (\"symmetric\": true in the recipe)")
            if (op.name in WEIGHT_OPS and t.constant and t.dtype in ("INT8", "INT16")
                    and any(z != 0 for z in t.zero_points)):
                add("asymmetric-weight", op, t.name, f"{t.dtype.lower()} weight with non-zero zero point",
                    "quantize weights symmetrically (weight_tensor_config \"symmetric\": true)")
        if integer_graph and op.name not in QUANT_OPS:
            floats = [t for t in op.inputs + op.outputs if t.dtype == "FLOAT32" and not t.constant]
            if floats:
                add("float-island", op, floats[0].name, f"{op.name} computes in float32 inside an integer graph",
                    "quantize this op (recipe entry for its tensor name) or accept a CPU fallback")
    found.extend(_kernel_check(Path(path)))
    return found


def _kernel_check(path: Path) -> list[Violation]:
    """Load the model in the real LiteRT interpreter and prepare every signature; a failed prepare names the op."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    out = []
    try:
        # LiteRT's own kernels, without the XNNPACK delegate: every op must have one (XNNPACK falls back to them), and
        # XNNPACK would pack every weight once per signature just to be thrown away (8 GB at the 1B shape).
        interp = Interpreter(model_path=str(path),
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        for sig in interp.get_signature_list():
            try:
                interp.get_signature_runner(sig)
            except (RuntimeError, ValueError) as exc:
                out.append(_kernel_violation(sig, exc))
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        out.append(_kernel_violation("model", exc))
    return out


def _kernel_violation(sig: str, exc: Exception) -> Violation:
    msg = " ".join(str(exc).split())[:300]
    return Violation("no-kernel", sig, -1, "?", "-", f"LiteRT could not prepare the model: {msg}",
                     "quantize the named op differently (int8, or keep it in float) so a kernel exists")
