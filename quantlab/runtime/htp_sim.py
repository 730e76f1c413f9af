"""A compiled main's QNN context run on the Qualcomm HTP simulator that onnxruntime-qnn ships for x86_64.

A LiteRT main compiled for a Snapdragon SoC holds, per signature, a DISPATCH_OP whose custom options (a flexbuffer
`{bytecode_offset, bytecode_size, name}`) locate the QNN context inside the file. Wrapped as an ONNX model with one
`com.microsoft` EPContext node (onnxruntime's contract for precompiled contexts: node name = QNN graph name,
`embed_mode=1`, `ep_cache_context` = the bytes, `source="QNN"`, I/O named and typed as the op's own tensors) and opened
with onnxruntime's QNN execution provider on `libQnnHtp.so` and no CPU fallback, the simulator executes exactly the
graph the phone would get ("RouterX86 … libnative architecture v79" in its log).

Choose it to check what the NPU computes, not for speed: ~1 s per decode call of the tiny model, ~10 s on the 270M.
Contexts compiled with weight sharing do not load here ("Shared weights buffer isn't supported on this platform"),
so simulate a copy compiled without it. The simulator runs in a child process (`python -m quantlab.runtime.htp_sim
_child DIR`): a crash is an exception naming the graph and the SoC, never a crash of the caller.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

DISPATCH_OP = "DISPATCH_OP"
_NP = {0: "float32", 2: "int32", 7: "int16", 9: "int8", 6: "bool"}  # LiteRT TensorType → numpy


@dataclass
class SimTensor:
    name: str  # the QNN (= LiteRT) tensor name, e.g. decode_embeddings
    key: str  # the signature's name for it, e.g. embeddings
    dtype: str
    shape: tuple
    scale: float = 0.0
    zero_point: int = 0

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float values with this tensor's own parameters (as quantlab's runtime does); arrays already in the tensor's
        dtype (caches) pass unchanged."""
        x = np.asarray(x)
        if x.dtype == np.dtype(self.dtype) or not self.scale:
            return x.astype(self.dtype)
        info = np.iinfo(self.dtype)
        return np.clip(np.round(x.astype(np.float32) / np.float32(self.scale)) + self.zero_point,
                       info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        if not self.scale:
            return np.asarray(q, np.float32)
        return (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)


@dataclass
class SimGraph:
    name: str  # QNN graph name, e.g. qnn_partition_1
    signature: str
    offset: int
    size: int
    inputs: list[SimTensor] = field(default_factory=list)  # a subset of the signature's (dead inputs are dropped)
    outputs: list[SimTensor] = field(default_factory=list)

    def context(self, model: str | Path) -> bytes:
        """The QNN context this graph runs from, read out of the compiled main `model`."""
        with open(model, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)

    @classmethod
    def from_dict(cls, d: dict) -> "SimGraph":
        t = lambda xs: [SimTensor(**{**x, "shape": tuple(x["shape"])}) for x in xs]  # noqa: E731
        return cls(d["name"], d["signature"], d["offset"], d["size"], t(d["inputs"]), t(d["outputs"]))


class SimCrash(RuntimeError):
    """The simulator's process died or failed; `log` is the tail of what it printed."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


def graphs(path: Path) -> dict[str, SimGraph]:
    """Every DISPATCH_OP of a compiled .tflite, by the signature it serves."""
    from ai_edge_litert.tools import flatbuffer_utils
    from flatbuffers import flexbuffers

    model = flatbuffer_utils.read_model(str(path))
    sigs = {sd.subgraphIndex: sd for sd in model.signatureDefs or []}
    out = {}
    for si, sg in enumerate(model.subgraphs):
        sd = sigs.get(si)
        keys = {m.tensorIndex: m.name.decode() for m in [*(sd.inputs or []), *(sd.outputs or [])]} if sd else {}

        def tensor(i: int) -> SimTensor:
            t, q = sg.tensors[i], sg.tensors[i].quantization
            scale = list(q.scale) if q is not None and q.scale is not None else []
            zp = list(q.zeroPoint) if q is not None and q.zeroPoint is not None else []
            return SimTensor(t.name.decode(), keys.get(i, t.name.decode()), _NP[t.type], tuple(int(s) for s in t.shape),
                             float(scale[0]) if len(scale) == 1 else 0.0, int(zp[0]) if len(zp) == 1 else 0)

        for op in sg.operators or []:
            if (model.operatorCodes[op.opcodeIndex].customCode or b"").decode() != DISPATCH_OP:
                continue
            opts = flexbuffers.Loads(bytes(op.customOptions))
            sig = sd.signatureKey.decode() if sd else f"subgraph_{si}"
            out[sig] = SimGraph(opts["name"], sig, int(opts["bytecode_offset"]), int(opts["bytecode_size"]),
                                [tensor(i) for i in op.inputs if i >= 0], [tensor(i) for i in op.outputs if i >= 0])
    return out


def epcontext_model(g: SimGraph, context: bytes):
    """The ONNX model onnxruntime's QNN execution provider opens a precompiled QNN context from."""
    from onnx import helper

    vi = lambda t: helper.make_tensor_value_info(t.name, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)),  # noqa
                                                 list(t.shape))
    node = helper.make_node("EPContext", [t.name for t in g.inputs], [t.name for t in g.outputs], name=g.name,
                            domain="com.microsoft", main_context=1, embed_mode=1, ep_cache_context=context,
                            source="QNN", partition_name=g.name)
    model = helper.make_model(helper.make_graph([node], g.name, [vi(t) for t in g.inputs], [vi(t) for t in g.outputs]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    return model


def run(path: Path, signature: str, samples: list[dict], soc: str = "?", timeout: float = 3600) -> dict:
    """Run `signature`'s QNN graph of the compiled main `path` once per sample, in a child process.

    samples: {signature input name: float (or already-quantized) array}; inputs the graph does not take are ignored.
    Returns {"outputs": [{output name: float array}], "session_load_s", "run_s": [...]}; raises SimCrash."""
    g = graphs(Path(path))[signature]
    with tempfile.TemporaryDirectory(prefix="quantlab-htpsim-") as tmp:
        work = Path(tmp)
        np.savez(work / "inputs.npz", **{f"{i}:{t.name}": t.quantize(s[t.key]) for i, s in enumerate(samples)
                                         for t in g.inputs})
        (work / "job.json").write_text(json.dumps({"model": str(path), "graph": asdict(g), "n": len(samples)}))
        cmd = [sys.executable, "-m", "quantlab.runtime.htp_sim", "_child", str(work)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               env=dict(os.environ, PYTHONFAULTHANDLER="1"))
        except subprocess.TimeoutExpired:
            raise SimCrash(f"graph {g.name} ({signature}) timed out after {timeout:.0f} s on SoC {soc}") from None
        if p.returncode != 0:
            how = (f"signal {-p.returncode} ({signal.Signals(-p.returncode).name})" if p.returncode < 0
                   else f"exit code {p.returncode}")
            raise SimCrash(f"graph {g.name} ({signature}) crashed on SoC {soc} ({how})", (p.stderr or "")[-4000:])
        res = json.loads((work / "result.json").read_text())
        raw = np.load(work / "outputs.npz")
        res["outputs"] = [{t.key: t.dequantize(raw[f"{i}:{t.name}"]) for t in g.outputs} for i in range(len(samples))]
    return res


def open_session(g: SimGraph, context: bytes):
    """An onnxruntime session that runs graph `g` of a QNN context on the simulated HTP, with no CPU fallback."""
    import onnxruntime as ort
    import onnxruntime_qnn

    if not any(d.ep_name == "QNN" for d in ort.get_ep_devices()):
        ort.register_execution_provider_library("QNN", onnxruntime_qnn.get_library_path())
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")  # every op on the simulated HTP, or fail
    so.add_provider_for_devices([d for d in ort.get_ep_devices() if d.ep_name == "QNN"],
                                {"backend_path": onnxruntime_qnn.get_qnn_htp_path()})
    return ort.InferenceSession(epcontext_model(g, context).SerializeToString(), sess_options=so)


def _child(work: Path) -> None:
    job = json.loads((work / "job.json").read_text())
    g = SimGraph.from_dict(job["graph"])
    context = g.context(job["model"])
    t0 = time.perf_counter()
    sess = open_session(g, context)
    load_s = time.perf_counter() - t0
    feeds, outs, run_s = np.load(work / "inputs.npz"), {}, []
    names = [t.name for t in g.outputs]
    for i in range(job["n"]):
        t1 = time.perf_counter()
        res = sess.run(names, {t.name: feeds[f"{i}:{t.name}"] for t in g.inputs})
        run_s.append(time.perf_counter() - t1)
        outs.update({f"{i}:{n}": a for n, a in zip(names, res)})
    np.savez(work / "outputs.npz", **outs)
    (work / "result.json").write_text(json.dumps({"session_load_s": load_s, "run_s": run_s}))


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "_child":
    _child(Path(sys.argv[2]))
