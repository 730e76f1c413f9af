"""Render report.md and report.html from an artifact folder's manifest (jinja2 templates, matplotlib plots)."""

from __future__ import annotations

import html
import re
from pathlib import Path

from quantlab import manifest
from quantlab.atomic import write_text
from quantlab.report import figures
from quantlab.report.guide import selection_guide
from quantlab.report.rows import last_run_seconds, stage_rows, variant_rows


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


def render_markdown(data: dict, rows: list, analysis: dict | None = None) -> str:
    model = data["model"]
    first = next((a.get("metrics") for a in data["artifacts"].values() if a.get("metrics")), None) or {}
    eval_note = (f"{first.get('tokens_scored')} tokens scored in windows of {first.get('window_tokens')}."
                 if first else "no evaluation yet.")
    sample = next((a["metrics"].get("sample") for a in data["artifacts"].values()
                   if a.get("metrics", {}).get("sample")), None) or {}
    return _env().get_template("report.md.j2").render(
        model=model, model_line=f"{model['num_layers']} layers, hidden {model['hidden_size']}, vocab "
                                f"{model['vocab_size']}, from {model['source']}.",
        created=data.get("created", ""), versions=data.get("versions", {}), eval_note=eval_note,
        guide=selection_guide(rows), rows=rows, stages=stage_rows(data), prompt=sample.get("prompt", ""),
        last_run_s=last_run_seconds(data), analysis=analysis,
        broken_float=[r["group"] for r in (analysis or {}).get("sensitivity", {}).get("rows", [])
                      if r["kl_float"] > analysis["sensitivity"]["all_int8"]["kl"]],
    )


def _md_to_html(md: str) -> str:
    """Enough Markdown for our own template: headings, tables, bullets, bold, paragraphs."""
    out, table = [], []

    def inline(s: str) -> str:
        s = html.escape(s)
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)

    def flush() -> None:
        if table:
            head, *body = [r for r in table if not re.match(r"^\|[-|\s]+\|$", r)]
            cells = lambda r: [c.strip() for c in r.strip().strip("|").split("|")]  # noqa: E731
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells(head)) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells(r)) + "</tr>" for r in body)
            out.append("</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h2>{inline(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{inline(line[2:])}</h1>")
        elif line.startswith("- "):
            out.append(f"<li>{inline(line[2:])}</li>")
        elif line.startswith("**Random weights**"):
            out.append(f"<p class='warn'>{inline(line)}</p>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)


def write_report(folder: Path) -> tuple[Path, Path]:
    """Write report.md and report.html into `folder`."""
    folder = Path(folder)
    from quantlab.analyze.analysis import load_analysis

    data = manifest.load(folder)
    analysis = load_analysis(folder)
    rows = variant_rows(data, folder)  # reads each variant's file when an older manifest lacks its int8 share
    md = render_markdown(data, rows, analysis)
    plots = [(t, img) for t, img in (
        ("Pareto front: int8 share of FC weights vs perplexity", figures.pareto(rows)),
        ("Sensitivity by op group", figures.sensitivity(analysis)),
        ("Size vs perplexity", figures.size_vs_perplexity(rows)),
        ("CPU speed per variant", figures.speed(rows)),
        ("Per-layer error of the quantized variants", figures.per_layer_error(rows)),
        ("KL divergence vs FP32 by position", figures.by_position(rows)),
    ) if img]
    page = _env().get_template("report.html.j2").render(model=data["model"], body=_md_to_html(md), plots=plots)
    write_text(folder / "report.md", md)
    write_text(folder / "report.html", page)
    return folder / "report.md", folder / "report.html"
