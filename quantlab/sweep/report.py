"""The sweep's comparison report: every lab's manifest merged into one table, the Pareto front across models and
SoCs (smaller shipped bundle and lower perplexity), and NPU coverage per SoC."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from quantlab import manifest
from quantlab.atomic import write_text
from quantlab.report.render import md_to_html


@dataclass
class Point:
    model: str
    random_weights: bool
    variant: str
    soc: str | None  # None: the uncompiled main (the CPU)
    shipped_mb: float  # (compiled) main + its embedder
    perplexity: float | None
    delta_pct: float | None
    kl: float | None
    top1: float | None
    ops_on_npu: str  # "1385/1385, 1413/1413" per signature, or ""
    fully_offloaded: bool


def points(data: manifest.Manifest) -> list[Point]:
    arts = data.artifacts
    fp = arts.get("fp32")
    base = fp.metrics.perplexity if fp is not None and fp.metrics else None
    out = []
    for name, a in arts.items():
        if a.role != "main":
            continue
        m, emb = a.metrics, arts.get(a.embedder or "embedder_fp32")
        ppl = m.perplexity if m else None
        delta = 100 * (ppl / base - 1) if ppl and base else None
        emb_mb = emb.bytes / 1e6 if emb else 0.0
        common = dict(model=data.model.name, random_weights=data.model.random_weights, variant=name, perplexity=ppl,
                      delta_pct=delta, kl=m.kl if m else None, top1=m.top1_agreement if m else None)
        out.append(Point(**common, soc=None, shipped_mb=a.bytes / 1e6 + emb_mb, ops_on_npu="",
                         fully_offloaded=False))
        for soc, c in a.compiled.items():
            cov = ", ".join(f"{x['ops_offloaded']}/{x['ops_total']}" for x in c.coverage.values())
            out.append(Point(**common, soc=soc, shipped_mb=(c.bytes / 1e6 + emb_mb) if not c.failed else float("nan"),
                             ops_on_npu="failed" if c.failed else cov, fully_offloaded=c.fully_offloaded))
    return out


def pareto(pts: list[Point]) -> list[Point]:
    """Points no other point beats on both smaller shipped size and lower perplexity (compiled ones must be fully
    offloaded to count)."""
    ok = [p for p in pts if p.perplexity is not None and (p.soc is None or p.fully_offloaded)]

    def dominates(a: Point, b: Point) -> bool:
        return (a.shipped_mb <= b.shipped_mb and a.perplexity <= b.perplexity
                and (a.shipped_mb < b.shipped_mb or a.perplexity < b.perplexity))

    return [p for p in ok if not any(dominates(o, p) for o in ok if o is not p)]


def write_sweep_report(out: Path, labs: list[dict]) -> tuple[Path, Path]:
    """sweep.md, sweep.html and sweep.json in `out` from the labs' folders (`labs`: run_sweep's results)."""
    out = Path(out)
    pts: list[Point] = []
    lines = ["# quantlab sweep", ""]
    for lab in labs:
        folder = Path(lab["argv"][lab["argv"].index("--out") + 1])
        status = "done" if lab["returncode"] == 0 else f"FAILED (exit {lab['returncode']})"
        lines.append(f"- lab `{lab['model']}`: {status} in {lab['seconds']:.0f} s on {lab['node']}; {folder}/report.html")
        if lab["returncode"] == 0:
            pts += points(manifest.load(folder))
    if any(p.random_weights for p in pts):
        lines += ["", "**Random weights** in some labs: their accuracy figures mean nothing; sizes and NPU coverage do."]
    front = {(p.model, p.variant, p.soc) for p in pareto(pts)}
    lines += ["", "## Every variant", "",
              "| model | variant | target | shipped MB | perplexity | Δ vs its FP32 | KL | top-1 | ops on the NPU | Pareto |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, f: "—" if v is None else f % v  # noqa: E731
    for p in pts:
        lines.append(f"| {p.model}{' (random weights)' if p.random_weights else ''} | {p.variant} | "
                     f"{p.soc or 'CPU'} | {p.shipped_mb:.1f} | {fmt(p.perplexity, '%.3f')} | "
                     f"{fmt(p.delta_pct, '%+.2f %%')} | {fmt(p.kl, '%.4f')} | "
                     f"{fmt(None if p.top1 is None else 100 * p.top1, '%.1f %%')} | {p.ops_on_npu or '—'} | "
                     f"{'yes' if (p.model, p.variant, p.soc) in front else ''} |")
    socs = sorted({p.soc for p in pts if p.soc})
    lines += ["", "## NPU coverage per SoC", "", "| SoC | variants fully on the NPU | compiled, partly on the CPU | failed |",
              "|---|---|---|---|"]
    for soc in socs:
        at = [p for p in pts if p.soc == soc]
        full = [f"{p.model}/{p.variant}" for p in at if p.fully_offloaded]
        part = [f"{p.model}/{p.variant}" for p in at if not p.fully_offloaded and p.ops_on_npu != "failed"]
        failed = [f"{p.model}/{p.variant}" for p in at if p.ops_on_npu == "failed"]
        lines.append(f"| {soc} | {', '.join(full) or '—'} | {', '.join(part) or '—'} | {', '.join(failed) or '—'} |")
    md = "\n".join(lines) + "\n"
    write_text(out / "sweep.md", md)
    write_text(out / "sweep.html", "<!doctype html><meta charset='utf-8'><title>quantlab sweep</title>"
               "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}"
               "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 7px}</style>" + md_to_html(md))
    write_text(out / "sweep.json", json.dumps({"labs": labs, "points": [asdict(p) for p in pts],
                                               "pareto": [list(k) for k in sorted(front, key=str)]}, indent=1))
    return out / "sweep.md", out / "sweep.html"
