"""Where in the graph a quantized main loses accuracy: per-tensor SNR against the FP32 main on a real input.

Uses ai-edge-quantizer's own validator (it runs both models with every intermediate tensor kept and compares
same-named tensors). The input is a realistic prefill call: a chunk of evaluation text with the caches already holding
the earlier chunks' keys and values. Errors accumulate along the graph, so the first op where SNR drops is the culprit;
the summary gives the worst ops, SNR by op type and by layer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from quantlab.calibration.capture import capture_window
from quantlab.check.graph import read_ops
from quantlab.runtime.session import ArtifactSet

_LAYER = re.compile(r"NpuDecoderLayer_(\d+)")


def _db(snr: float) -> float:
    return float(10 * np.log10(max(snr, 1e-12)))


def _module(name: str) -> str:
    """The innermost module name in a tensor name (e.g. Gemma3RMSNorm_q_norm, Linear_down_proj, NpuAttention_attn)."""
    path = name.split(";")[0].split("/")[-1]
    return path.split(".")[-1] or name


def tensor_errors(folder: Path, variant: str, text: str, chunk: int = 2, worst: int = 15) -> dict:
    """SNR (dB) of every intermediate tensor of `variant` vs fp32 on prefill chunk `chunk` of `text`."""
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer.utils.validation_utils import ValidationErrorMetric

    folder = Path(folder)
    arts = ArtifactSet(folder)
    t = arts.host.prefill_len
    ids = arts.encode(text)[: min((chunk + 1) * t, arts.host.cache_len)]
    samples = [feed for sig, feed in capture_window(arts, ids) if sig == arts.prefill_sig]
    sample = samples[min(chunk, len(samples) - 1)]
    fp = arts.path("fp32")
    qp = arts.path(variant)
    q = quantizer.Quantizer(str(fp), previous_quantized_model=str(qp))
    res = q.validate(test_data={arts.prefill_sig: [sample]}, error_metrics=[ValidationErrorMetric.SNR])
    r = res.get_signature_comparison_result(arts.prefill_sig)
    snr = {n: _db(m["snr"]) for n, m in {**r.intermediate_tensors, **r.output_tensors}.items()}
    ops = [o for o in read_ops(fp) if o.signature == arts.prefill_sig]
    rows = []
    for o in ops:
        name = o.outputs[0].name if o.outputs else ""
        if name in snr:
            m = _LAYER.search(name)
            rows.append({"op_index": o.index, "op": o.name, "tensor": name, "module": _module(name),
                         "layer": int(m.group(1)) if m else None, "snr_db": round(snr[name], 1)})
    by_op, by_layer = defaultdict(list), defaultdict(list)
    for row in rows:
        by_op[row["op"]].append(row["snr_db"])
        by_layer[row["layer"] if row["layer"] is not None else -1].append(row["snr_db"])
    first_bad = next((row for row in rows if row["snr_db"] < 20), None)
    return {
        "variant": variant,
        "input": f"{arts.prefill_sig} chunk {chunk} (positions {chunk * t}-{(chunk + 1) * t - 1}) of the text",
        "worst": sorted(rows, key=lambda x: x["snr_db"])[:worst],
        "first_below_20db": first_bad,
        "by_op_type": {k: {"median_db": float(np.median(v)), "min_db": float(np.min(v)), "count": len(v)}
                       for k, v in sorted(by_op.items(), key=lambda kv: np.median(kv[1]))},
        "by_layer": {k: {"median_db": float(np.median(v)), "min_db": float(np.min(v))}
                     for k, v in sorted(by_layer.items())},
        "logits_db": min((round(v, 1) for n, v in snr.items() if re.search(r"logits(_\d+)?_output$", n)),
                         default=None),
    }
