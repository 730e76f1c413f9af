"""What GPTQ needs from calibration: for every fully-connected weight, H = Σ xᵀx over the inputs it met.

GPTQ (ai-edge-quantizer's `GPTQ` algorithm) rounds a weight column by column and moves each column's rounding error
onto the columns not yet rounded, weighted by H, so that W·x rather than W itself stays close on real inputs. It costs
nothing at run time (same int8 weights, same scales, same graph). Measured on the real 270M (1,279 held-out tokens vs
FP32): with float activations (PyTorch) GPTQ cuts the weights' error (KL 0.0048 -> 0.0031, top-1 95.9 -> 97.0 %);
with int16 activations it does not lower KL, see quantlab/quantize/recipes. Off by default (`calibrate --hessians`):
the extra pass runs every sample through an interpreter without XNNPACK (270M calibration 190 -> 850 s).

ai-edge-quantizer collects H itself only in its keep-every-tensor calibration, and for every FC tensor, outputs
included (the LM head's logits would need a 262,144² matrix); here only FC inputs are read, from a LiteRT interpreter
that keeps every tensor, over the same samples the ranges come from. A weight is shared by prefill and decode (one
buffer), so both signatures' inputs add to one H, and inputs that feed the same weights (q, k, v) share one matrix.
FCs with a single output row (the residual rotation's 640→1 ops, exact in int8) and inputs wider than `MAX_DIM` are not
measured and keep nearest rounding (H is dim² floats: the 1B's down projections, 6,912 wide, would need 5 GB of them).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quantlab.atomic import atomic_path
from quantlab.errors import UserError

HESSIAN_FILE = "hessians.npz"
MAX_DIM = 4096


# Ops whose output ai-edge-quantizer gives its input's range entry (the entry object itself, replacing the output's):
# an H attached to such an op's output would be lost, so it goes on the chain of inputs as well.
SAME_SCALE_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE")


@dataclass
class FcInput:
    """One group of FC ops that read the same activations and so share one H."""

    key: str  # "b<buffer>+b<buffer>...": the weights it feeds, the same from both signatures
    dim: int
    measured: bool  # False: single-row weights or wider than MAX_DIM; gets the identity (= nearest rounding)
    reads: list[tuple[str, int, int, tuple[str, ...]]] = field(default_factory=list)
    # (signature, subgraph, tensor index, range-entry names that must carry H: the input and its same-scale sources)


def fc_inputs(main_path: Path, max_dim: int = MAX_DIM) -> dict[str, FcInput]:
    """Every FC input, grouped by the weight buffers it feeds."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(main_path))
    sigs = {sd.subgraphIndex: sd.signatureKey.decode() for sd in (model.signatureDefs or [])}
    op_name = lambda op: flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)  # noqa: E731
    feeds: dict[tuple[int, int], list] = {}  # (subgraph, input tensor) -> [buffers, dim, rows]
    chains: dict[tuple[int, int], tuple[str, ...]] = {}
    for sg_index, sg in enumerate(model.subgraphs):
        if sg_index not in sigs:
            continue
        producer = {int(t): op for op in sg.operators for t in op.outputs}
        for op in sg.operators:
            if op_name(op) != "FULLY_CONNECTED" or len(op.inputs) < 2:
                continue
            x, w = int(op.inputs[0]), sg.tensors[op.inputs[1]]
            entry = feeds.setdefault((sg_index, x), [set(), int(w.shape[-1]), 0])
            entry[0].add(int(w.buffer))
            entry[2] = max(entry[2], int(w.shape[0]))
            names, t = [sg.tensors[x].name.decode()], x
            while t in producer and op_name(producer[t]) in SAME_SCALE_OPS:
                t = int(producer[t].inputs[0])
                names.append(sg.tensors[t].name.decode())
            chains[(sg_index, x)] = tuple(names)
    # Inputs that feed a common weight (the same activation in prefill and decode, or q/k/v) share one H: join them
    # into components, so every weight buffer is GPTQ-rounded with one H from both signatures.
    parent = {n: n for n in feeds}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    owner: dict[int, tuple[int, int]] = {}
    for n, (buffers, _, _) in feeds.items():
        for b in buffers:
            if b in owner:
                parent[root(n)] = root(owner[b])
            else:
                owner[b] = n
    members: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for n in feeds:
        members.setdefault(root(n), []).append(n)
    groups: dict[str, FcInput] = {}
    for nodes in members.values():
        buffers = sorted(set().union(*(feeds[n][0] for n in nodes)))
        dim, rows = feeds[nodes[0]][1], max(feeds[n][2] for n in nodes)
        key = "+".join(f"b{b}" for b in buffers)
        group = groups[key] = FcInput(key, dim, rows >= 2 and dim <= max_dim)
        for sg_index, t in nodes:
            group.reads.append((sigs[sg_index], sg_index, t, chains[(sg_index, t)]))
    return groups


class HessianAccumulator:
    """Runs samples through main with every tensor kept and adds each FC input's xᵀx (float64) to its group's H."""

    def __init__(self, main_path: Path, max_dim: int = MAX_DIM):
        self.groups = fc_inputs(main_path, max_dim)
        self.h = {k: np.zeros((g.dim, g.dim)) for k, g in self.groups.items() if g.measured}
        self.rows = dict.fromkeys(self.groups, 0)
        self.main_path = main_path
        self.interp = None
        self.runners: dict = {}
        self.by_sig: dict[str, list[tuple[str, int, int]]] = {}
        for k, g in self.groups.items():
            for sig, sg, t, _ in g.reads if g.measured else ():
                self.by_sig.setdefault(sig, []).append((k, sg, t))

    def add(self, sig: str, feed: dict[str, np.ndarray]) -> None:
        if sig not in self.by_sig:
            return
        if self.interp is None:
            from ai_edge_litert import interpreter as tfl

            # No XNNPACK: its fused partitions do not keep the intermediate tensors this reads.
            self.interp = tfl.Interpreter(
                model_path=str(self.main_path), num_threads=os.cpu_count() or 1,
                experimental_op_resolver_type=tfl.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                experimental_preserve_all_tensors=True)
        runner = self.runners.get(sig) or self.runners.setdefault(sig, self.interp.get_signature_runner(sig))
        runner(**feed)
        for k, sg, t in self.by_sig[sig]:
            x = self.interp.get_tensor(t, sg).reshape(-1, self.groups[k].dim).astype(np.float64)
            self.h[k] += x.T @ x
            self.rows[k] += x.shape[0]

    def release(self) -> None:
        """Let go of the interpreter (the sums stay); the next `add` builds a new one."""
        self.interp, self.runners = None, {}

    def save(self, path: Path) -> None:
        """hessians.npz: one mean H (float32) per measured group, and an index of every group and the range entries that
        carry its H (unmeasured groups get the identity when attached)."""
        index = {k: {"rows": self.rows[k], "dim": g.dim, "names": sorted({n for *_, chain in g.reads for n in chain})}
                 for k, g in self.groups.items()}
        arrays = {k: (self.h[k] / self.rows[k]).astype(np.float32) for k in index if self.rows[k]}
        buf = io.BytesIO()
        np.savez(buf, index=np.frombuffer(json.dumps(index).encode(), dtype=np.uint8), **arrays)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())


def attach_hessians(qsvs: dict, path: Path) -> int:
    """Add each FC input's H to its range entries (in place), where ai-edge-quantizer's GPTQ looks for it; returns how
    many weight groups got a measured one (0 if calibration saved none: then nothing is attached).

    Every FC gets an H: ai-edge-quantizer's GPTQ without one writes the float weights into an int8 tensor (0.10.0).
    Groups calibration did not measure get the identity, with which GPTQ is exactly nearest rounding."""
    if not path.is_file():
        return 0
    try:
        with np.load(path) as data:
            index = json.loads(bytes(data["index"]).decode())
            measured = {k: data[k].astype(np.float64) for k in index if k in data.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # numpy's and zipfile's errors on a bad file
        raise UserError(f"{path} is not a readable Hessian file ({type(exc).__name__}); re-run "
                        f"`quantlab calibrate {path.parent} --hessians`") from None
    eye: dict[int, np.ndarray] = {}
    for k, entry in index.items():
        h = measured.get(k)
        if h is None:
            h = eye.setdefault(entry["dim"], np.eye(entry["dim"]))
        for name in entry["names"]:
            if name in qsvs:
                qsvs[name] = {**qsvs[name], "hessian": h, "num_samples": max(entry["rows"], 1)}
    return len(measured)


def fc_weights(path: Path) -> dict[str, tuple[int, list[tuple[int, np.ndarray]]]]:
    """Per signature (subgraph index, FC ops in graph order as (input tensor index, weight as float64, dequantized if
    int8)): to compare a quantized main's weights with the FP32 main's (tests, bench/weight_rounding_bench.py)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    out = {}
    for sd in model.signatureDefs:
        sg = model.subgraphs[sd.subgraphIndex]
        rows = []
        for op in sg.operators:
            if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) != "FULLY_CONNECTED":
                continue
            w = sg.tensors[op.inputs[1]]
            raw = np.asarray(model.buffers[w.buffer].data)
            if w.type == schema.TensorType.INT8:  # one byte per element, else the file is corrupt
                if raw.size != np.prod(w.shape):
                    raise ValueError(f"int8 weight {w.name.decode()} of {path} holds {raw.size} bytes")
                scale = np.asarray(w.quantization.scale).reshape(-1, 1)
                arr = raw.view(np.int8).reshape(w.shape).astype(np.float64) * scale
            else:
                arr = raw.view(np.float32).reshape(w.shape).astype(np.float64)
            rows.append((int(op.inputs[0]), arr))
        out[sd.signatureKey.decode()] = (sd.subgraphIndex, rows)
    return out


def weighted_errors(fp32: Path, quantized: Path, hessians: Path) -> dict[str, tuple[float, int]]:
    """tr(ΔW H ΔWᵀ) of `quantized`'s int8 weights against `fp32`'s, summed per weight shape over every measured FC
    (H from `hessians`): how far W·x moves on the inputs calibration saw. {shape: (error, FC count)}."""
    groups = fc_inputs(fp32)
    where = {(sg, t): g for g in groups.values() for _, sg, t, _ in g.reads}
    ref, got = fc_weights(fp32), fc_weights(quantized)
    out: dict[str, tuple[float, int]] = {}
    with np.load(hessians) as data:
        for sig, (sg, rows) in ref.items():
            for i, (x, w) in enumerate(rows):
                g = where[(sg, x)]
                if not g.measured:
                    continue
                d = got[sig][1][i][1] - w
                e, n = out.get(str(w.shape), (0.0, 0))
                out[str(w.shape)] = (e + float(np.einsum("ij,jk,ik->", d, data[g.key].astype(np.float64), d)), n + 1)
    return out
