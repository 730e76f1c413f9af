"""What the NPU computes: a variant's compiled QNN graphs on the HTP simulator against the CPU interpreter and FP32.

Every accuracy figure elsewhere comes from the LiteRT CPU interpreter running the *uncompiled* quantized main; the NPU
runs the *compiled* QNN graph, with its own kernels, fusions and requantization. This spot check feeds both the same
quantized inputs, taken from quantlab's CPU pipeline running the evaluation text:
- decode at `positions` positions spread over one cache window: KL and top-1 of the simulated logits against the CPU
  interpreter's, and of both against the FP32 main's at the same positions;
- one prefill chunk (`chunk`, with the earlier chunks in the caches): the K/V slices it writes, simulated vs CPU, as a
  relative error and in quantization steps.
The simulator runs a copy compiled without weight sharing (shared weights do not load there), kept in the folder's
.npu-sim/. A simulator crash is a result (which graph, which SoC), not a failure of the measurement.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from quantlab import layout
from quantlab.compile.compiler import compile_model
from quantlab.evaluate.metrics import log_softmax
from quantlab.runtime.htp_sim import SimCrash, run
from quantlab.runtime.session import ArtifactSet

SIM_DIR = ".npu-sim"


def sim_copy(arts: ArtifactSet, soc: str) -> Path:
    """The variant's main compiled for `soc` without weight sharing (made once per main and SoC)."""
    rec = arts.data.artifact(arts.variant)
    path = arts.folder / SIM_DIR / f"{arts.variant}_{soc.lower()}_{rec.sha256[:12]}.tflite"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        compile_model(arts.path(arts.variant), soc, path, weight_sharing=False, overwrite=True)
    return path


def npu_agreement(folder: Path, variant: str, soc: str, text: str, positions: int = 32, chunk: int = 1) -> dict:
    """Simulated NPU vs CPU vs FP32 on `positions` decode positions and prefill chunk `chunk` of `text`."""
    arts, fp32 = ArtifactSet(Path(folder), variant), ArtifactSet(Path(folder), "fp32")
    t0 = time.perf_counter()
    path = sim_copy(arts, soc)
    compile_s = time.perf_counter() - t0
    ids = arts.encode(text)[: arts.host.cache_len]
    want = set(np.linspace(0, len(ids) - 1, min(positions, len(ids))).round().astype(int).tolist())
    samples, cpu, ref = [], [], []
    sess, ref_sess = arts.session(), fp32.session()
    for p, tok in enumerate(ids):
        values, caches = sess.inputs(layout.DECODE, [tok], 1)
        if p in want:
            samples.append({**values, **{k: v.copy() for k, v in caches.items()}})
        logits = sess.run(layout.DECODE, values, caches, 1, want_logits=True)[0]
        ref_logits = ref_sess.decode(tok)
        if p in want:
            cpu.append(logits)
            ref.append(ref_logits)
    result = {"variant": variant, "soc": soc, "positions": sorted(want), "compile_s": round(compile_s, 1)}
    try:
        res = run(path, layout.DECODE, samples, soc)
        sim = np.stack([o[layout.LOGITS].reshape(-1) for o in res["outputs"]])
        cpu_a, ref_a = np.stack(cpu), np.stack(ref)
        result["decode"] = {
            **_agreement("vs_cpu", cpu_a, sim), **_agreement("sim_vs_fp32", ref_a, sim),
            **_agreement("cpu_vs_fp32", ref_a, cpu_a),
            "seconds_per_call": float(np.median(res["run_s"])), "session_load_s": res["session_load_s"]}
    except SimCrash as exc:
        result["decode"] = {"crashed": str(exc)}
    result["prefill"] = _prefill(arts, path, ids, chunk, soc)
    return result


def _agreement(name: str, ref: np.ndarray, test: np.ndarray) -> dict:
    lr, lt = log_softmax(ref), log_softmax(test)
    return {f"kl_{name}": float((np.exp(lr) * (lr - lt)).sum(-1).mean()),
            f"top1_{name}": float((ref.argmax(-1) == test.argmax(-1)).mean())}


def _prefill(arts: ArtifactSet, path: Path, ids: list[int], chunk: int, soc: str) -> dict:
    t = arts.host.prefill_len
    if len(ids) < (chunk + 1) * t:
        return {"skipped": f"the text has fewer than {(chunk + 1) * t} tokens"}
    sess = arts.session()
    for k in range(chunk):  # the earlier chunks' keys and values go into the caches
        sess.step(arts.prefill_sig, ids[k * t:(k + 1) * t], t, want_logits=False)
    values, caches = sess.inputs(arts.prefill_sig, ids[chunk * t:(chunk + 1) * t], t)
    sample = {**values, **{k: v.copy() for k, v in caches.items()}}
    cpu = arts.main.run(arts.prefill_sig, values, raw=sess.as_inputs_of(arts.prefill_sig, caches))
    try:
        res = run(path, arts.prefill_sig, [sample], soc)
    except SimCrash as exc:
        return {"chunk": chunk, "crashed": str(exc)}
    sim, spec = res["outputs"][0], arts.main.outputs[arts.prefill_sig]
    errs, steps = [], []
    for name in sim:
        if not name.startswith("kv_slice_"):
            continue
        a, b = cpu[name].astype(np.float64), sim[name].astype(np.float64)
        errs.append(float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-12)))
        steps.append(float(np.abs(b - a).max() / (spec[name].scale or 1.0)))
    return {"chunk": chunk, "positions": [chunk * t, (chunk + 1) * t - 1],
            "kv_relative_error_mean": float(np.mean(errs)), "kv_relative_error_max": float(np.max(errs)),
            "kv_max_steps": float(np.max(steps)), "seconds_per_call": float(np.median(res["run_s"]))}
