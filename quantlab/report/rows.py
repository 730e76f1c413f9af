"""Flatten the manifest into the rows the report shows (one per variant, one per stage)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VariantRow:
    variant: str
    bytes: int
    io: str
    perplexity: float | None = None
    ppl_delta_pct: float | None = None
    kl: float | None = None
    top1: float | None = None
    prefill_tps: float | None = None
    decode_tps: float | None = None
    rss_mb: float | None = None
    violations: int | None = None
    npu: dict[str, dict] = field(default_factory=dict)  # soc → coverage/size/failed
    sample: str | None = None
    by_position: list[dict] = field(default_factory=list)
    per_layer_db: dict = field(default_factory=dict)
    first_bad: dict | None = None
    int8_fc_share: float = 0.0  # FC weights whose op takes int8 activations (the NPU's fastest path)
    embedder: str = "embedder_fp32"  # the embedder this main ships with
    embedder_bytes: int = 0

    @property
    def mb(self) -> float:
        return self.bytes / 1e6

    @property
    def shipped_mb(self) -> float:
        """main + its embedder: what goes on the phone (with a compiled main: see `npu`'s own bytes)."""
        return (self.bytes + self.embedder_bytes) / 1e6


def _int8_share(a: dict, folder) -> float:
    """From the manifest; older records lack it, so read it from the file when it is there."""
    if "int8_fc_share" in a or folder is None or a.get("scheme") == "fp32":
        return a.get("int8_fc_share", 0.0)
    from pathlib import Path

    from quantlab.analyze.groups import int8_fc_share

    path = Path(folder) / a["path"]
    return int8_fc_share(path) if path.is_file() else 0.0


def variant_rows(data: dict, folder=None) -> list[VariantRow]:
    arts = data["artifacts"]
    base = (arts.get("fp32", {}).get("metrics") or {}).get("perplexity")
    rows = []
    for name, a in arts.items():
        if a.get("role") != "main":
            continue
        m = a.get("metrics") or {}
        io = a.get("io_dtype")
        row = VariantRow(name, a["bytes"], io["embeddings"] if isinstance(io, dict) else str(io),
                         int8_fc_share=_int8_share(a, folder))
        row.embedder = a.get("embedder", "embedder_fp32")
        row.embedder_bytes = arts.get(row.embedder, {}).get("bytes", 0)
        if m:
            row.perplexity = m.get("perplexity")
            if base and row.perplexity is not None:
                row.ppl_delta_pct = 100 * (row.perplexity / base - 1)
            row.kl, row.top1 = m.get("kl"), m.get("top1_agreement")
            sp = m.get("speed", {})
            row.prefill_tps, row.decode_tps = sp.get("prefill_tokens_per_s"), sp.get("decode_tokens_per_s")
            row.rss_mb = m.get("peak_rss_mb_runtime")
            row.sample = (m.get("sample") or {}).get("text")
            row.by_position = m.get("by_position", [])
            po = m.get("per_op") or {}
            row.per_layer_db = {int(k): v["median_db"] for k, v in po.get("by_layer", {}).items() if int(k) >= 0}
            row.first_bad = po.get("first_below_20db")
        if "check" in a:
            row.violations = len(a["check"]["violations"])
        for key, val in a.items():
            if key.startswith("npu_"):
                row.npu[key[4:].upper()] = val
        rows.append(row)
    return rows


def stage_rows(data: dict) -> list[dict]:
    """Per stage: what making the current artifacts took, and what the last run did (ran / skipped steps)."""
    timings = data.get("timings_s") or {}
    lab, last = timings.get("lab") or {}, timings.get("last_run") or {}
    rows = []
    for stage, t in lab.items():
        if not isinstance(t, dict):  # a "total" entry
            continue
        lt = last.get(stage) or {}
        rows.append({"stage": stage, "seconds": t.get("seconds", 0.0), "steps": t.get("steps", 0),
                     "ran": lt.get("ran", 0), "skipped": lt.get("skipped", 0), "rss_mb": t.get("peak_rss_mb")})
    return rows


def last_run_seconds(data: dict) -> float | None:
    return ((data.get("timings_s") or {}).get("last_run") or {}).get("total")


def pareto_front(rows: list[VariantRow]) -> list[VariantRow]:
    """Variants no other variant beats on all of: smaller shipped files, more FC weights at int8, lower perplexity."""
    pts = [r for r in rows if r.perplexity is not None]

    def dominates(a: VariantRow, b: VariantRow) -> bool:
        ge = a.shipped_mb <= b.shipped_mb and a.int8_fc_share >= b.int8_fc_share and a.perplexity <= b.perplexity
        gt = a.shipped_mb < b.shipped_mb or a.int8_fc_share > b.int8_fc_share or a.perplexity < b.perplexity
        return ge and gt

    return [r for r in pts if not any(dominates(o, r) for o in pts if o is not r)]
