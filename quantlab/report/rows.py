"""The manifest's records flattened into the rows the report shows (one per variant, one per stage)."""

from __future__ import annotations

from dataclasses import dataclass, field

from quantlab.manifest import Artifact, CompileRecord, Manifest


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
    npu: dict[str, CompileRecord] = field(default_factory=dict)  # soc → compile record
    sample: str | None = None
    by_position: list[dict] = field(default_factory=list)
    per_layer_db: dict = field(default_factory=dict)
    first_bad: dict | None = None
    int8_fc_share: float = 0.0  # FC weights whose op takes int8 activations (the NPU's fastest path)
    embedder: str = "embedder_fp32"  # the embedder this main ships with
    embedder_bytes: int = 0
    origin: str = ""
    npu_sim: dict[str, dict] = field(default_factory=dict)  # soc → the HTP simulator's spot check

    @property
    def mb(self) -> float:
        return self.bytes / 1e6

    @property
    def shipped_mb(self) -> float:
        """main + its embedder: what goes on the phone (with a compiled main: see `npu`'s own bytes)."""
        return (self.bytes + self.embedder_bytes) / 1e6

    def npu_full(self) -> list[str]:
        """SoCs this variant compiled for with every op on the NPU."""
        return [soc for soc, c in self.npu.items() if c.fully_offloaded]


def variant_rows(data: Manifest) -> list[VariantRow]:
    """One row per uncompiled main (fp32 first), with its metrics, checks and per-SoC compile results."""
    arts = data.artifacts
    fp = arts.get("fp32")
    base = fp.metrics.perplexity if fp is not None and fp.metrics is not None else None
    return [_row(name, a, arts, base) for name, a in arts.items() if a.role == "main"]


def _row(name: str, a: Artifact, arts: dict[str, Artifact], base: float | None) -> VariantRow:
    emb = a.embedder or "embedder_fp32"
    row = VariantRow(name, a.bytes, a.io_dtype.get("embeddings", a.io_dtype.get("io", "?")),
                     int8_fc_share=a.quantize.int8_fc_share if a.quantize else 0.0, embedder=emb,
                     embedder_bytes=arts[emb].bytes if emb in arts else 0,
                     origin=a.quantize.origin if a.quantize else "export", npu=dict(a.compiled),
                     npu_sim=dict(a.npu_sim))
    m = a.metrics
    if m is not None:
        row.perplexity, row.kl, row.top1 = m.perplexity, m.kl, m.top1_agreement
        if base:
            row.ppl_delta_pct = 100 * (m.perplexity / base - 1)
        row.prefill_tps, row.decode_tps = m.speed.get("prefill_tokens_per_s"), m.speed.get("decode_tokens_per_s")
        row.rss_mb = m.peak_rss_mb_runtime
        row.sample = (m.sample or {}).get("text")
        row.by_position = m.by_position
        po = m.per_op or {}
        row.per_layer_db = {int(k): v["median_db"] for k, v in po.get("by_layer", {}).items() if int(k) >= 0}
        row.first_bad = po.get("first_below_20db")
    if a.check is not None:
        row.violations = len(a.check.violations)
    return row


@dataclass
class BundleRow:
    """One `.litertlm`: what it holds and, for an uncompiled one, what LiteRT-LM measured beside quantlab's runtime."""

    path: str
    mb: float
    variant: str
    soc: str | None
    litert_lm_perplexity: float | None = None
    quantlab_perplexity: float | None = None
    tokens: int | None = None
    sample: str | None = None
    error: str | None = None
    crashes: list[str] = field(default_factory=list)  # LiteRT-LM crashes before the try that scored it

    @property
    def delta_pct(self) -> float | None:
        if self.litert_lm_perplexity is None or not self.quantlab_perplexity:
            return None
        return 100 * (self.litert_lm_perplexity / self.quantlab_perplexity - 1)


def bundle_rows(data: Manifest) -> list[BundleRow]:
    rows = []
    for a in data.artifacts.values():
        if a.role != "bundle":
            continue
        variant = data.artifacts[a.source].source if a.soc else a.source
        main = data.artifacts.get(variant)
        ours = main.metrics.perplexity if main is not None and main.metrics is not None else None
        m = a.metrics
        rows.append(BundleRow(a.path, a.bytes / 1e6, variant, a.soc, m.perplexity if m else None, ours,
                              m.tokens_scored if m else None, (m.sample or {}).get("text") if m else None,
                              a.extra.get("litert_lm_error"), a.extra.get("litert_lm_crashes", [])))
    return rows


def stage_rows(data: Manifest) -> list[dict]:
    """Per stage: what making the current artifacts took, and what the last run did (ran / skipped steps)."""
    return [{"stage": s, "seconds": t.seconds, "wall": t.wall_seconds, "steps": t.steps, "ran": t.ran,
             "skipped": t.skipped, "rss_mb": t.peak_rss_mb} for s, t in data.timings.items()]


def pareto_front(rows: list[VariantRow]) -> list[VariantRow]:
    """Variants no other variant beats on both size and accuracy: smaller shipped files and lower perplexity."""
    pts = [r for r in rows if r.perplexity is not None]

    def dominates(a: VariantRow, b: VariantRow) -> bool:
        ge = a.shipped_mb <= b.shipped_mb and a.perplexity <= b.perplexity
        gt = a.shipped_mb < b.shipped_mb or a.perplexity < b.perplexity
        return ge and gt

    return [r for r in pts if not any(dominates(o, r) for o in pts if o is not r)]
