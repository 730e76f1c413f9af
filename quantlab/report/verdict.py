"""The report's answer, computed from the measured rows: which variant to ship for the NPU and for the CPU, and why.

Grades, each from a stated source (top-1 agreement with FP32 over the evaluation text):
- healthy: ≥ 99 %, and worth investigating: < 95 % — ai-edge-quantizer's LLM evaluation guide;
- unusable: < 50 % (quantlab's rule: the variant disagrees with FP32 on most tokens).
The NPU pick is the most accurate (lowest KL) variant that compiles with every op on the NPU; the CPU pick is the
fastest decoder within the perplexity tolerance (`--tolerance`, default ×1.05, the search's own bound).
"""

from __future__ import annotations

from dataclasses import dataclass

from quantlab.report.rows import VariantRow, pareto_front

HEALTHY_TOP1, INVESTIGATE_TOP1 = 0.99, 0.95  # ai-edge-quantizer's LLM evaluation guide
UNUSABLE_TOP1 = 0.50  # quantlab's rule
SOURCE = ("top-1 agreement ≥ 99 % is healthy and < 95 % worth investigating (ai-edge-quantizer's LLM evaluation "
          "guide); < 50 % is unusable (quantlab's rule)")


def grade(r: VariantRow) -> str:
    if r.top1 is None:
        return "not measured"
    if r.top1 >= HEALTHY_TOP1:
        return "healthy"
    if r.top1 >= INVESTIGATE_TOP1:
        return "acceptable"
    return "investigate" if r.top1 >= UNUSABLE_TOP1 else "unusable"


@dataclass
class Pick:
    target: str
    row: VariantRow | None
    why: str


def _figures(r: VariantRow) -> str:
    return (f"perplexity {r.ppl_delta_pct:+.1f} % vs FP32, KL {r.kl:.3f}, top-1 {r.top1:.1%} ({grade(r)})"
            if r.kl is not None else f"perplexity {r.perplexity:.3f}")


def npu_pick(rows: list[VariantRow]) -> Pick:
    cands = [r for r in rows if r.variant != "fp32" and r.npu_full() and r.kl is not None and grade(r) != "unusable"]
    if not cands:
        failed = [r.variant for r in rows if r.variant != "fp32" and not r.npu_full()]
        return Pick("NPU", None, "no usable quantized variant compiles with every op on the NPU"
                    + (f" ({', '.join(failed)} did not; see the NPU table for the compiler's reasons)" if failed else ""))
    best = min(cands, key=lambda r: r.kl)
    soc, rec = next((s, c) for s, c in best.npu.items() if c.fully_offloaded)
    others = [r for r in cands if r is not best and r.int8_fc_share > best.int8_fc_share]
    alt = max(others, key=lambda r: r.int8_fc_share) if others else None
    why = (f"the most accurate variant that runs every op on the NPU ({', '.join(best.npu_full())}); compiled "
           f"{rec.bytes / 1e6:.0f} MB + embedder {best.embedder_bytes / 1e6:.0f} MB = "
           f"{(rec.bytes + best.embedder_bytes) / 1e6:.0f} MB shipped for {soc}")
    if alt is not None:
        why += (f". For speed: **{alt.variant}** puts {alt.int8_fc_share:.0%} of the FC weights on the int8 path "
                f"at {_figures(alt)}")
    return Pick("NPU", best, why)


def cpu_pick(rows: list[VariantRow], tolerance: float) -> Pick:
    ok = [r for r in rows if r.decode_tps and r.perplexity is not None
          and (r.ppl_delta_pct is None or r.ppl_delta_pct <= 100 * (tolerance - 1))]
    if not ok:
        return Pick("CPU", None, "no variant has CPU figures yet (run the evaluate stage)")
    best = max(ok, key=lambda r: r.decode_tps)
    fp = next((r for r in rows if r.variant == "fp32"), None)
    vs = f" vs FP32 {fp.decode_tps:.1f}" if fp is not None and fp.decode_tps and best is not fp else ""
    return Pick("CPU", best, f"the fastest CPU decode ({best.decode_tps:.1f} tok/s{vs}, 2 threads) among variants "
                             f"within ×{tolerance:g} of FP32's perplexity")


def verdict(rows: list[VariantRow], tolerance: float = 1.05) -> list[str]:
    """The report's first lines: one per target, then how the variants are graded and the Pareto front."""
    lines = []
    for pick in (npu_pick(rows), cpu_pick(rows, tolerance)):
        if pick.row is None:
            lines.append(f"**{pick.target}: nothing to ship yet** — {pick.why}.")
        else:
            lines.append(f"**{pick.target}: ship {pick.row.variant}** — {_figures(pick.row)}. Why: {pick.why}.")
    graded = ", ".join(f"{r.variant} {grade(r)}" for r in rows if r.variant != "fp32" and r.top1 is not None)
    if graded:
        lines.append(f"Grades: {graded}. Rule: {SOURCE}.")
    front = pareto_front(rows)
    if len(front) > 1:
        lines.append("Pareto front of size and accuracy (no other variant is both smaller and lower in perplexity): "
                     + ", ".join(
                         f"{r.variant} ({r.shipped_mb:.0f} MB shipped, {r.int8_fc_share:.0%} int8 FC weights, "
                         f"perplexity {r.ppl_delta_pct:+.1f} %)" for r in sorted(front, key=lambda r: r.int8_fc_share)
                         if r.ppl_delta_pct is not None) + ".")
    return lines
