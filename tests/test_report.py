"""The report's verdict and Pareto front, from rows built by hand; markdown → HTML through markdown-it."""

from __future__ import annotations

from quantlab.manifest import CompileRecord
from quantlab.report.render import md_to_html
from quantlab.report.rows import VariantRow, pareto_front
from quantlab.report.verdict import cpu_pick, grade, npu_pick, verdict

FULL = CompileRecord("SM8750", bytes=280_000_000, input_bytes=276_000_000,
                     coverage={"decode": {"ops_offloaded": 9, "ops_total": 9, "partitions": 1}})
PART = CompileRecord("SM8750", bytes=280_000_000, input_bytes=276_000_000,
                     coverage={"decode": {"ops_offloaded": 8, "ops_total": 9, "partitions": 2}})


def _row(name, mb, ppl_pct, kl, top1, decode, share=0.0, npu=None):
    base = 10.0
    return VariantRow(name, int(mb * 1e6), "int16", perplexity=base * (1 + ppl_pct / 100), ppl_delta_pct=ppl_pct,
                      kl=kl, top1=top1, decode_tps=decode, int8_fc_share=share, npu={"SM8750": npu} if npu else {},
                      embedder_bytes=174_000_000)


def rows():
    return [
        VariantRow("fp32", 1_000_000_000, "float32", perplexity=10.0, ppl_delta_pct=0.0, decode_tps=20.0),
        _row("int8", 279, 1.7e9, 16.0, 0.01, 40.0, share=1.0, npu=FULL),
        _row("int16_w8", 276, 2.2, 0.022, 0.914, 10.0, npu=FULL),
        _row("a16_a8-lm_head", 276, 3.7, 0.037, 0.886, 12.0, share=0.62, npu=FULL),
        _row("dynamic_int8", 276, 0.5, 0.005, 0.959, 45.0, npu=PART),
    ]


def test_grades_follow_the_stated_thresholds():
    r = rows()
    assert [grade(x) for x in r[1:]] == ["unusable", "investigate", "investigate", "acceptable"]
    assert grade(_row("x", 1, 0, 0, 0.995, 1)) == "healthy"


def test_npu_pick_is_the_most_accurate_fully_compiled_variant_with_the_int8_alternative():
    pick = npu_pick(rows())
    assert pick.row.variant == "int16_w8"  # dynamic_int8 is more accurate but not fully on the NPU; int8 is unusable
    assert "a16_a8-lm_head" in pick.why and "62%" in pick.why


def test_cpu_pick_is_the_fastest_within_tolerance():
    assert cpu_pick(rows(), 1.05).row.variant == "dynamic_int8"
    slow_ok = [r for r in rows() if r.variant in ("fp32", "int16_w8")]
    assert cpu_pick(slow_ok, 1.01).row.variant == "fp32"  # int16_w8 is +2.2 %: outside ×1.01


def test_verdict_answers_both_targets_without_contradiction():
    lines = verdict(rows())
    assert lines[0].startswith("**NPU: ship int16_w8**") and lines[1].startswith("**CPU: ship dynamic_int8**")
    assert "ai-edge-quantizer's LLM evaluation guide" in lines[2]
    assert not any("Do not ship" in l for l in lines)
    none = verdict([rows()[0], rows()[1]])
    assert none[0].startswith("**NPU: nothing to ship yet**")


def test_pareto_front_of_size_and_accuracy():
    front = {r.variant for r in pareto_front(rows())}
    # fp32 has the lowest perplexity; every 276 MB variant is dominated by dynamic_int8 (same size, lower perplexity),
    # int8 (279 MB) by all of them. A smaller variant with worse perplexity joins the front.
    assert front == {"fp32", "dynamic_int8"}
    smaller = _row("int16_w4", 150, 6.0, 0.06, 0.85, 9.0)
    assert {r.variant for r in pareto_front([*rows(), smaller])} == {"fp32", "dynamic_int8", "int16_w4"}


def test_markdown_tables_and_emphasis_render_to_html():
    html = md_to_html("## Verdict\n\n- **NPU: ship x** <script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<h2>Verdict</h2>" in html and "<strong>NPU: ship x</strong>" in html
    assert "<table>" in html and "<td>2</td>" in html and "<script>" not in html
