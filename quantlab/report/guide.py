"""The selection guide: recommendations computed from the measured rows, never canned.

Thresholds (stated in the guide itself): a variant is "usable" when its top-1 agreement with FP32 is at least 90 % and
its perplexity at most 10 % above FP32's; "close to FP32" is within 1 % perplexity and 98 % top-1.
"""

from __future__ import annotations

from quantlab.report.rows import VariantRow, pareto_front

USABLE_TOP1, USABLE_PPL = 0.90, 10.0
CLOSE_TOP1, CLOSE_PPL = 0.98, 1.0


def _usable(r: VariantRow) -> bool:
    return r.top1 is not None and r.top1 >= USABLE_TOP1 and r.ppl_delta_pct is not None and r.ppl_delta_pct <= USABLE_PPL


def _npu_full(r: VariantRow) -> list[str]:
    out = []
    for soc, c in r.npu.items():
        cov = c.get("coverage") or {}
        if not c.get("failed") and cov and all(x["ops_offloaded"] == x["ops_total"] for x in cov.values()):
            out.append(soc)
    return out


def selection_guide(rows: list[VariantRow]) -> list[str]:
    fp = next((r for r in rows if r.variant == "fp32"), None)
    quant = [r for r in rows if r.variant != "fp32" and r.perplexity is not None]
    lines = [f"Rules: usable = top-1 agreement ≥ {USABLE_TOP1:.0%} and perplexity ≤ +{USABLE_PPL:.0f} % vs FP32; "
             f"close to FP32 = ≥ {CLOSE_TOP1:.0%} and ≤ +{CLOSE_PPL:.0f} %."]
    if fp is None or not quant:
        return lines + ["Not enough measurements for a recommendation (run the evaluate stage)."]
    usable = [r for r in quant if _usable(r)]
    best = min(quant, key=lambda r: r.kl if r.kl is not None else float("inf"))
    lines.append(f"Most accurate quantized variant: **{best.variant}** (perplexity {best.ppl_delta_pct:+.1f} %, "
                 f"top-1 {best.top1:.1%}, KL {best.kl:.3f}, {best.mb:.0f} MB = {best.bytes / fp.bytes:.2f}× FP32).")
    close = [r for r in quant if r.top1 >= CLOSE_TOP1 and r.ppl_delta_pct <= CLOSE_PPL]
    if close:
        lines.append(f"Close to FP32: {', '.join(r.variant for r in close)}.")
    else:
        lines.append("No quantized variant is close to FP32 yet; keep FP32 where accuracy matters most.")
    for r in quant:
        if not _usable(r):
            lines.append(f"Do not ship **{r.variant}**: top-1 {r.top1:.1%}, perplexity {r.ppl_delta_pct:+.1f} % "
                         + (f"(accuracy is lost from {r.first_bad['module']} in layer {r.first_bad['layer']} on)"
                            if r.first_bad else "") + ".")
    npu_ok = [(r, _npu_full(r)) for r in usable if _npu_full(r)]
    if npu_ok:
        r, socs = min(npu_ok, key=lambda x: x[0].bytes)
        lines.append(f"For the NPU: **{r.variant}**, fully offloaded on {', '.join(socs)}.")
    else:
        partial = [(r, soc, c) for r in usable for soc, c in r.npu.items() if not c.get("failed")]
        if partial:
            r, soc, c = partial[0]
            cov = c.get("coverage", {})
            frac = sum(x["ops_offloaded"] for x in cov.values()) / max(1, sum(x["ops_total"] for x in cov.values()))
            lines.append(f"For the NPU: no usable variant is fully offloaded; **{r.variant}** runs {frac:.1%} of its ops "
                         f"on the {soc} NPU (the rest on the CPU, see the NPU table).")
        else:
            compiled = [f"{r.variant} ({', '.join(_npu_full(r))})" for r in quant if _npu_full(r)]
            lines.append(("For the NPU: " + ", ".join(compiled) + " compile fully, but none is accurate enough to "
                          "ship yet (above)." if compiled else
                          "For the NPU: no usable variant compiles yet; see the NPU table for the compiler's reasons."))
    front = pareto_front(rows)
    lines.append("Pareto front (no other variant is smaller, has more FC weights at int8 activations and lower "
                 "perplexity at once): " + ", ".join(
                     f"**{r.variant}** ({r.mb:.0f} MB, {r.int8_fc_share:.0%} int8 FC weights, perplexity "
                     f"{r.ppl_delta_pct:+.1f} %)" for r in sorted(front, key=lambda r: r.int8_fc_share)) + ".")
    int8_path = [r for r in front if r.int8_fc_share > 0 and _usable(r) and _npu_full(r)]
    if int8_path:
        r = max(int8_path, key=lambda r: r.int8_fc_share)
        lines.append(f"For the NPU's int8 path: **{r.variant}** is the usable front variant with the most FC weights "
                     f"at int8 ({r.int8_fc_share:.0%}), fully offloaded on {', '.join(_npu_full(r))}.")
    else:
        lines.append("For the NPU's int8 path: no variant with int8 activations is usable yet (see the search table).")
    if usable:
        fastest = max(usable + [fp], key=lambda r: r.decode_tps or 0)
        lines.append(f"For the CPU: **{fastest.variant}** decodes fastest among usable variants "
                     f"({fastest.decode_tps:.1f} tok/s vs FP32 {fp.decode_tps:.1f}).")
    else:
        lines.append(f"For the CPU: FP32 ({fp.decode_tps:.1f} tok/s decode) — no quantized variant is usable yet.")
    return lines
