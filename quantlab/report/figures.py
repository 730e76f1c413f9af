"""Plots for the HTML report (matplotlib, Agg backend), as base64 PNG so report.html is one self-contained file."""

from __future__ import annotations

import base64
import io

from quantlab.report.rows import VariantRow, pareto_front
from quantlab.report.verdict import grade

WIDTH = 6.4  # inches at 110 dpi: 700 px, the report page's text width


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plotted(rows: list[VariantRow]) -> tuple[list[VariantRow], str]:
    """Rows worth a point on an accuracy axis, and a note naming those left off: one unusable variant (perplexity
    ×10⁷) would flatten every other point on a log axis."""
    off = [r for r in rows if grade(r) == "unusable"]
    note = f" ({', '.join(r.variant for r in off)}: unusable, off scale)" if off else ""
    return [r for r in rows if r.perplexity is not None and r not in off], note


def size_vs_perplexity(rows: list[VariantRow]) -> str | None:
    pts, note = _plotted(rows)
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    for r in pts:
        ax.scatter(r.shipped_mb, r.perplexity, s=60)
        ax.annotate(r.variant, (r.shipped_mb, r.perplexity), textcoords="offset points", xytext=(6, 4))
    ax.set_xlabel("shipped size: main + its embedder (MB)")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_yscale("log")
    ax.set_title("Size vs perplexity (lower left is better)" + note, fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def speed(rows: list[VariantRow]) -> str | None:
    pts = [r for r in rows if r.decode_tps is not None]
    if not pts:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.0))
    names = [r.variant for r in pts]
    axes[0].bar(names, [r.prefill_tps for r in pts], color="#4c72b0")
    axes[0].set_title("CPU prefill tokens/s")
    axes[1].bar(names, [r.decode_tps for r in pts], color="#dd8452")
    axes[1].set_title("CPU decode tokens/s")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", rotation=25)
    return _png(fig)


def per_layer_error(rows: list[VariantRow]) -> str | None:
    pts = [r for r in rows if r.per_layer_db]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    for r in pts:
        layers = sorted(r.per_layer_db)
        ax.plot(layers, [r.per_layer_db[i] for i in layers], marker="o", label=r.variant)
    ax.axhline(20, color="grey", ls="--", lw=1)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("median tensor SNR vs FP32 (dB)")
    ax.set_title("Per-layer error (one real prefill call; higher is better)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def by_position(rows: list[VariantRow]) -> str | None:
    usable, note = _plotted(rows)
    pts = [r for r in usable if r.by_position and "kl" in r.by_position[0]]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    for r in pts:
        ax.plot([b["from"] for b in r.by_position], [b["kl"] for b in r.by_position], marker="o", label=r.variant)
    ax.set_xlabel("position in the window (128-token buckets)")
    ax.set_ylabel("KL vs FP32 (log)")
    ax.set_yscale("log")
    ax.set_title("Accuracy by position (late positions must not degrade)" + note, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def pareto(rows: list[VariantRow]) -> str | None:
    usable, note = _plotted(rows)
    pts = [r for r in usable if r.ppl_delta_pct is not None]
    if len(pts) < 2:
        return None
    front = {r.variant for r in pareto_front(rows)}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
    for r in pts:
        on = r.variant in front
        ax.scatter(r.shipped_mb, max(r.ppl_delta_pct, 1e-2), s=30 + 200 * r.int8_fc_share,
                   color="#c44e52" if on else "#8c8c8c", zorder=3)
        ax.annotate(f"{r.variant} ({100 * r.int8_fc_share:.0f}% int8 FC)", (r.shipped_mb, max(r.ppl_delta_pct, 1e-2)),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("shipped size: main + its embedder (MB)")
    ax.set_ylabel("perplexity increase vs FP32 (%, log)")
    ax.set_yscale("log")
    ax.set_title("Pareto front of size and accuracy in red (lower left is better; marker area ~ int8 share)" + note,
                 fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def sensitivity(analysis) -> str | None:
    if not analysis:
        return None
    rows = analysis.rows
    plt = _plt()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    x = range(len(rows))
    base = analysis.all_int16["kl"]
    ax.bar([i - 0.2 for i in x], [r.kl_8 for r in rows], width=0.4, label="group at int8", color="#dd8452")
    if any(r.kl_float is not None for r in rows):
        ax.bar([i + 0.2 for i in x], [r.kl_float or 0 for r in rows], width=0.4, label="group float", color="#55a868")
    ax.axhline(base, color="grey", ls="--", lw=1, label="all int16")
    ax.set_xticks(list(x), [r.group for r in rows], rotation=30, ha="right")
    ax.set_ylabel("KL vs FP32 (log)")
    ax.set_yscale("log")
    ax.set_title("One group changed, the rest int16")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def npu_sim(rows: list[VariantRow]) -> str | None:
    """KL vs FP32 of the simulated NPU and of the CPU interpreter, side by side per variant and SoC."""
    pts = [(f"{r.variant}\n{soc}", s["decode"]) for r in rows for soc, s in r.npu_sim.items()
           if "crashed" not in s["decode"]]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    x = range(len(pts))
    ax.bar([i - 0.2 for i in x], [d["kl_cpu_vs_fp32"] for _, d in pts], width=0.4, label="CPU interpreter",
           color="#4c72b0")
    ax.bar([i + 0.2 for i in x], [d["kl_sim_vs_fp32"] for _, d in pts], width=0.4, label="NPU (HTP simulator)",
           color="#c44e52")
    ax.set_xticks(list(x), [n for n, _ in pts], fontsize=8)
    ax.set_ylabel("KL vs FP32 (log)")
    ax.set_yscale("log")
    ax.set_title("What the NPU computes vs what the CPU measured (same inputs)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)
