"""Render report.md and report.html from an artifact folder's manifest (jinja2 templates, markdown-it, matplotlib).

The report reads the manifest's records only (quantlab/manifest.py): nothing here opens a model.
"""

from __future__ import annotations

from pathlib import Path

from quantlab import manifest
from quantlab.atomic import write_text
from quantlab.report import figures
from quantlab.report.rows import bundle_rows, stage_rows, variant_rows
from quantlab.report.verdict import verdict


def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("quantlab.report", "templates"), autoescape=False,
                             trim_blocks=False, lstrip_blocks=False)
    env.globals.update(fmt=lambda v, f: "—" if v is None else f % v,
                       pct=lambda v: "—" if v is None else f"{100 * v:.1f} %",
                       rejected_summary=_rejected_summary)
    return env


def _rejected_summary(rejected: list[dict]) -> str:
    if not rejected:
        return "none"
    kinds: dict[str, int] = {}
    for r in rejected:
        k = f"{r['op']} ({' × '.join(r.get('qnn_io', [])[:2])}; QNN error {r['qnn_error']})"
        kinds[k] = kinds.get(k, 0) + 1
    return "; ".join(f"{n}× {k}" for k, n in kinds.items())


def render_markdown(data: manifest.Manifest) -> str:
    model, rows = data.model, variant_rows(data)
    metrics = [a.metrics for a in data.artifacts.values() if a.metrics is not None]
    eval_note = (f"{metrics[0].tokens_scored} tokens scored in windows of {metrics[0].window_tokens}."
                 if metrics else "no evaluation yet.")
    sample = next((m.sample for m in metrics if m.sample), None) or {}
    tolerance = data.analysis.tolerance if data.analysis else 1.05
    analysis = data.analysis
    return _env().get_template("report.md.j2").render(
        model=model, model_line=f"{model.num_layers} layers, hidden {model.hidden_size}, vocab "
                                f"{model.vocab_size}, from {model.source}.",
        created=data.created, versions=data.versions, eval_note=eval_note, guide=verdict(rows, tolerance),
        rows=rows, bundles=bundle_rows(data), stages=stage_rows(data), prompt=sample.get("prompt", ""),
        last_run_s=data.last_run_seconds,
        analysis=analysis,
        broken_float=[r.group for r in analysis.rows if r.kl_float is not None and r.kl_float > analysis.all_int8["kl"]]
        if analysis else [],
    )


def md_to_html(md: str) -> str:
    """CommonMark with tables (markdown-it-py); raw HTML in the text is escaped."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(md)


def write_report(folder: Path) -> tuple[Path, Path]:
    """Write report.md and report.html into `folder`."""
    folder = Path(folder)
    data = manifest.load(folder)
    rows = variant_rows(data)
    md = render_markdown(data)
    plots = [(t, img) for t, img in (
        ("Pareto front: shipped size vs perplexity", figures.pareto(rows)),
        ("Sensitivity by op group", figures.sensitivity(data.analysis)),
        ("Size vs perplexity", figures.size_vs_perplexity(rows)),
        ("CPU speed per variant", figures.speed(rows)),
        ("Per-layer error of the quantized variants", figures.per_layer_error(rows)),
        ("KL divergence vs FP32 by position", figures.by_position(rows)),
        ("What the NPU computes vs what the CPU measured", figures.npu_sim(rows)),
    ) if img]
    page = _env().get_template("report.html.j2").render(model=data.model, body=md_to_html(md), plots=plots)
    write_text(folder / "report.md", md)
    write_text(folder / "report.html", page)
    return folder / "report.md", folder / "report.html"
