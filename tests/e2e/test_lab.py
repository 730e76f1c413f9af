"""`quantlab run` end to end on the tiny random Gemma3: artifacts, report, resume, what re-runs when an option
changes, bad inputs caught before any work, interruption."""

from __future__ import annotations

import json
import time

import pytest

from quantlab import cli, manifest
from quantlab.errors import UserError
from quantlab.lab.config import NOT_INPUTS, RunConfig
from quantlab.lab.pipeline import Lab
from tests.conftest import LAB_ARGS, LAB_MODEL
from tests.helpers import run_cli

TINY = LAB_ARGS  # the session's `lab` fixture (tests/conftest.py): Gemma3's 512-token window, so it is bundled too
TINY_CFG = dict(model=LAB_MODEL, prefill_len=8, cache_len=64)
M = LAB_MODEL


def test_layout_and_manifest(lab):
    names = {p.name for p in lab.iterdir()}
    for f in (f"{M}_embedder_fp32.tflite", f"{M}_embedder_int8.tflite", f"{M}_main_fp32.tflite",
              f"{M}_main_int8.tflite", f"{M}_main_int16_w8.tflite", f"{M}_main_int16_w4.tflite",
              f"{M}_main_int8_aot_sm8750.tflite", f"{M}_main_int16_w4_aot_sm8750.tflite",
              f"{M}_main_int16_w8_aot_sm8750.tflite", f"{M}_fp32.litertlm", f"{M}_int16_w8.litertlm",
              f"{M}_int16_w8_aot_sm8750.litertlm", "calibration.json", "manifest.json", "report.md", "report.html",
              "tokenizer"):
        assert f in names, f
    data = manifest.load(lab)
    assert data.format_version == manifest.FORMAT_VERSION and data.versions["litert-torch"] == "0.10.0"
    for v in ("fp32", "int8", "int16_w8", "int16_w4"):
        a = data.artifacts[v]
        assert a.metrics.perplexity > 0 and a.metrics.speed["decode_tokens_per_s"] > 0
        assert a.check.violations == []
    assert data.artifacts["int8"].compiled["SM8750"].coverage["decode"]["partitions"] == 1
    assert data.artifacts["int16_w4"].compiled["SM8750"].fully_offloaded  # the default 4-bit scheme compiles whole
    assert data.artifacts["int16_w4"].bytes < 0.75 * data.artifacts["int16_w8"].bytes
    assert data.artifacts["int8_aot_sm8750"].source == "int8"
    assert set(data.timings) >= {"export", "calibrate", "quantize", "check", "compile", "bundle", "evaluate"}
    # each step's CPU seconds recorded beside its seconds (a compile's counts its compiler program's)
    state = json.loads((lab / ".quantlab-run.json").read_text())["steps"]
    assert all(0 < rec["cpu_s"] for rec in state.values()), state
    assert state["compile:int8:SM8750"]["cpu_s"] >= 0.3 * state["compile:int8:SM8750"]["seconds"]
    # every uncompiled bundle was scored through LiteRT-LM, next to quantlab's own runtime (same tokens)
    for v in ("fp32", "int16_w8"):
        theirs, ours = data.artifacts[f"bundle_{v}"].metrics, data.artifacts[v].metrics
        assert theirs.tokens_scored == ours.tokens_scored and theirs.sample["text"]
        assert abs(theirs.perplexity / ours.perplexity - 1) < 0.02, (v, theirs.perplexity, ours.perplexity)
    assert data.artifacts["bundle_int16_w8_aot_sm8750"].source == "int16_w8_aot_sm8750"


def test_mixed_variant_from_the_search_is_built_compiled_and_reported(lab):
    """The analyze stage chose a recipe that compiles fully; the lab built it as a variant named for it."""
    from quantlab.quantize.schemes import parse

    data = manifest.load(lab)
    a = data.analysis
    chosen = next(c for c in a.candidates if c.name == a.chosen)
    assert chosen.fully_offloaded and chosen.qnn_rule_violations == 0 and chosen.int8_groups
    # every op group has a row, each measured (KL is a real number, not a placeholder)
    assert {r.group for r in a.rows} >= {"attention", "norms", "lm_head", "mlp_down"}
    assert all(r.kl_8 > 0 for r in a.rows)
    # each axis's first candidate is a sensitivity row: its scores are the row's, not measured twice
    raw = json.loads((lab / "analysis.json").read_text())
    cands = {c["name"]: c for c in raw["search"]["candidates"]}
    first8, rows = cands["a16_a8-" + a.order[0]], {r.group: r for r in a.rows}
    assert first8["scores_reused"] and first8["kl"] == rows[a.order[0]].kl_8
    assert cands["a16"]["scores_reused"] and cands["a16"]["kl"] == a.all_int16["kl"]
    # the saved recipe file is the searched scheme itself (same name, same recipe)
    saved = parse(str(lab / "recipes" / f"{a.chosen}.json"))
    assert saved == parse(a.chosen) and saved.origin == "searched"
    art = data.artifacts[a.chosen]
    # the built variant has int8 activations on exactly the share of FC weights the search said
    assert art.quantize.int8_fc_share == pytest.approx(chosen.int8_weight_share, abs=1e-3)
    assert art.compiled["SM8750"].fully_offloaded
    # the search checked its candidates at QNN's O2 and kept none of those files; the compile stage compiled the chosen
    # recipe and int16_w8 (the search's all-int16 candidate, the same bytes) at O3, with the coverage the search saw
    assert a.compile_level == "O2" and not (lab / ".compiled-kept").exists()
    for variant, cand in ((a.chosen, chosen), ("int16_w8", cands["a16"])):
        rec = data.artifacts[variant].compiled["SM8750"]
        assert rec.opt_level == "O3" and not rec.reused
        assert rec.coverage == (cand.coverage if variant == a.chosen else cand["coverage"])
    assert art.metrics.kl > 0 and art.check.violations == []
    md = (lab / "report.md").read_text()
    assert "## Sensitivity by op group" in md and "## Mixed-precision search" in md and "## LiteRT-LM bundles" in md


def test_report_opens_with_the_verdict_says_random_weights_and_embeds_plots(lab):
    md = (lab / "report.md").read_text()
    assert "random weights" in md and "| int8 | SM8750 |" in md
    # the verdict comes before any table, with an answer per target
    assert md.index("## Verdict") < md.index("| variant")
    verdict = md[md.index("## Verdict"):md.index("| variant")]
    assert "**NPU: " in verdict and "**CPU: " in verdict and "ai-edge-quantizer's LLM evaluation guide" in verdict
    page = (lab / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 5  # incl. the Pareto front and the sensitivity plot
    assert "<table>" in page and "<h2>Verdict</h2>" in page  # rendered by markdown-it
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched


def test_the_report_says_when_litert_lm_crashed(lab):
    """A bundle scored on a second try says so beside its perplexity; one whose engine crashed on both says that
    instead of a figure (lab/steps.py records both; the manifest is changed in memory only)."""
    from quantlab.report.render import render_markdown

    data = manifest.load(lab)
    data.artifacts["bundle_int16_w8"].extra["litert_lm_crashes"] = ["signal 11 after 781 s"]
    data.artifacts["bundle_fp32"].extra["litert_lm_error"] = "its engine crashed (signal 11) in each of 2 tries"
    rows = {line.split(" | ")[0].strip("| "): line for line in render_markdown(data).splitlines()
            if ".litertlm |" in line}
    ppl = data.artifacts["bundle_int16_w8"].metrics.perplexity
    assert f"{ppl:.3f} (on a second try: signal 11 after 781 s)" in rows[f"{M}_int16_w8.litertlm"]
    assert "| LiteRT-LM: its engine crashed (signal 11) in each of 2 tries |" in rows[f"{M}_fp32.litertlm"]


def test_second_run_skips_everything_and_new_scheme_redoes_only_it(lab_copy):
    res = run_cli(["run", *TINY, "--out", str(lab_copy)])
    assert res.rc == 0, res.err[-3000:]
    out = res.out
    for stage in ("export", "calibrate", "analyze", "quantize", "check", "compile", "evaluate"):
        line = next(l for l in out.splitlines() if l.strip().startswith(stage))
        assert "(0 run," in line, line
    # Only int8 now: nothing new to do either (int8's steps are unchanged; the search's choice and the int8
    # embedder they ship with are built alongside whatever schemes are named).
    res = run_cli(["run", *TINY, "--out", str(lab_copy), "--schemes", "int8"])
    assert res.rc == 0 and "quantize       0.0 s  (0 run, 3 unchanged)" in res.out, res.out


# What each RunConfig field changes, as a user would expect it (not derived from the code): flipping the field on a
# finished run makes exactly these stages (re-)run some step. Every stage from export on depends on export's output.
AFTER_EXPORT = {"export", "calibrate", "analyze", "quantize", "check", "compile", "bundle", "evaluate"}
AFTER_CALIBRATE = AFTER_EXPORT - {"export"}
AFTER_ANALYZE = {"analyze", "quantize", "check", "compile", "bundle", "evaluate"}
FLIPS = {
    "model": ("gemma3-1b-random", "refused"),  # another model in the same folder: an error naming --overwrite
    "prefill_len": (16, AFTER_EXPORT),
    "cache_len": (96, AFTER_EXPORT),
    "smooth_alpha": (0.5, AFTER_EXPORT),
    "rotate": (0, AFTER_EXPORT),
    "hadamard": (False, AFTER_EXPORT),
    "calib_texts": ("calib", AFTER_EXPORT),
    "calib_windows": (3, AFTER_CALIBRATE),
    "analyze": (False, {"quantize"}),  # no search: its variant is no longer built (nothing re-runs; a step goes)
    "tolerance": (1.2, AFTER_ANALYZE),
    "analyze_tokens": (64, AFTER_ANALYZE),
    "search_soc": ("SM8650", AFTER_ANALYZE),
    "full_search": (True, AFTER_ANALYZE),
    "search_opt_level": ("O1", AFTER_ANALYZE),
    "schemes": (("int8", "int16_w8", "dynamic_int8"), {"quantize", "check", "compile", "bundle", "evaluate"}),
    "embedder": ("fp32", {"quantize", "check", "compile", "bundle", "evaluate"}),
    "socs": (("SM8750", "SM8650"), {"compile", "bundle"}),
    "bundles": (False, "fewer"),
    "npu_sim": (True, {"npu_sim"}),
    "npu_sim_positions": (4, set()),  # read only when npu_sim is on  # no bundle: their steps are no longer planned, nothing else changes
    "eval_text": ("eval", {"evaluate"}),
    "eval_tokens": (40, {"evaluate"}),
    "decode_steps": (8, {"evaluate"}),
    "sample_prompt": ("Once upon a time", {"evaluate"}),
    "per_op": (False, {"evaluate"}),
}


def test_every_option_reruns_exactly_the_stages_that_read_it(lab, tmp_path):
    """The plan on a finished run: unchanged options plan nothing; each flipped option plans exactly its stages."""
    fields = set(RunConfig.__dataclass_fields__) - NOT_INPUTS
    assert set(FLIPS) == fields, f"give every RunConfig field an expectation: {sorted(fields ^ set(FLIPS))}"
    text = tmp_path / "t.txt"
    text.write_text("A short text of our own, for calibration or evaluation. " * 40)
    base = RunConfig(out=lab, **TINY_CFG)
    assert Lab(base).plan().stale_stages() == set()
    for field, (value, expected) in FLIPS.items():
        if value in ("calib", "eval"):
            value = (text,) if value == "calib" else text
        if expected == "refused":
            with pytest.raises(UserError, match="--overwrite"):
                Lab(base.replace(**{field: value})).plan()
            continue
        planned = Lab(base.replace(**{field: value})).plan()
        if field == "analyze":  # nothing stale, but the searched variant's step is no longer planned
            # the embedder's step and one per scheme
            assert planned.stale_stages() == set() and len(planned.steps["quantize"]) == 1 + len(base.schemes), \
                planned.steps
            continue
        if expected == "fewer":
            assert planned.stale_stages() == set() and not planned.steps["bundle"], planned.steps
            continue
        assert planned.stale_stages() == expected, (field, planned.steps)


def test_eta_counts_only_the_later_steps_that_will_run_again(lab, tmp_path):
    """The ETA a stage prints for the stages after it, on a finished run: nothing when no option changed (it used to
    count every later stage at its typical time), only the scoring when an evaluate option changed, and only one
    variant's steps when that variant's main is made again (eta.rerun, from what the state recorded of each step)."""
    from quantlab.lab.state import RunState

    base = RunConfig(out=lab, **TINY_CFG)
    records = RunState(lab).steps
    assert all("inputs" in r for r in records.values())

    def predicted(cfg: RunConfig, after: str, changed: set[str]) -> float:
        one = Lab(cfg)
        one.plan()  # loads the state and builds every step, as a run does
        return one._later_seconds(after, set(changed))

    def recorded(stage: str, where=lambda name: True) -> float:
        return sum(r["seconds"] for s, r in records.items() if s.split(":")[0] == stage and where(s))

    assert predicted(base, "quantize", set()) == 0.0
    evaluate = sum(1 for s in records if s.startswith("evaluate:"))
    assert predicted(base.replace(eval_tokens=40), "bundle", set()) == pytest.approx(
        recorded("evaluate") / min(len(Lab(base).resources.slots()), evaluate))
    # int16_w8's main made again with another key: its check, compile, bundles and scorings, a step per core.
    slots = len(Lab(base).resources.slots())
    w8 = lambda name: any(p in ("int16_w8", "bundle_int16_w8") for p in name.split(":"))  # noqa: E731
    expected = sum(recorded(st, w8) / max(1, min(slots, sum(1 for s in records if s.split(":")[0] == st and w8(s))))
                   for st in ("check", "compile", "bundle", "evaluate"))
    assert expected > 0
    assert predicted(base, "quantize", {"quantize:int16_w8"}) == pytest.approx(expected)


def test_run_without_hadamard_over_a_default_run_really_reruns(lab_copy):
    """The bug this design removes: changing --hadamard over an existing run used to skip every stage."""
    before = manifest.load(lab_copy).artifacts["fp32"].sha256
    assert manifest.load(lab_copy).export.hadamard == {"block": 128}  # on by default
    res = run_cli(["run", *TINY, "--out", str(lab_copy), "--no-hadamard", "--no-analyze", "--schemes", "int16_w8",
                   "--no-per-op", "--no-bundle", "--eval-tokens", "16"])
    assert res.rc == 0, res.err[-3000:]
    out = res.out
    assert "export      " in out and "(1 run, 0 unchanged)" in next(l for l in out.splitlines() if "export" in l)
    data = manifest.load(lab_copy)
    assert data.export.hadamard is None and data.artifacts["fp32"].sha256 != before


def test_bad_inputs_exit_2_with_one_line_before_any_work(lab, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    bad_recipe = tmp_path / "mine.json"
    bad_recipe.write_text('[{"regex": ".*", "operation": "*"')  # truncated JSON
    shadow = tmp_path / "int8.json"
    shadow.write_text("[]")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    from quantlab.quantize.schemes import parse

    for d, scheme in (("a", "int8"), ("b", "int16_w8")):  # two valid recipes of one name
        (tmp_path / d / "x.json").write_text(json.dumps(parse(scheme).recipe))
    unknown_algorithm = tmp_path / "odd.json"
    unknown_algorithm.write_text(json.dumps([{"regex": ".*", "operation": "*", "algorithm_key": "magic"}]))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    cases = [
        (["--schemes", "int4"], "int8"),
        (["--schemes", str(bad_recipe)], "not valid JSON"),
        (["--schemes", str(shadow)], "rename the file"),
        (["--schemes", f"{tmp_path / 'a' / 'x.json'},{tmp_path / 'b' / 'x.json'}"], "both make variant 'x'"),
        (["--schemes", str(unknown_algorithm)], "rejects it"),
        (["--soc", "SM0000"], "SM8750"),
        (["--eval-text", str(empty)], "empty"),
        (["--calib-text", str(tmp_path / "missing.txt")], "does not exist"),
        (["--prefill-len", "64", "--cache-len", "32"], "--cache-len"),
    ]
    for extra, says in cases:
        fresh = tmp_path / f"fresh{len(extra)}"
        t0 = time.perf_counter()
        assert cli.main(["run", *TINY, "--out", str(fresh), *extra]) == 2, extra
        seconds = time.perf_counter() - t0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("quantlab: error:") and says in err[0], (extra, err)
        assert not fresh.exists(), f"{extra}: {fresh} was created before the error"  # nothing written
        assert seconds < 10, f"{extra}: the error took {seconds:.1f} s"
    assert cli.main(["run", *TINY, "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "x").write_text("not a run")
    assert cli.main(["run", *TINY, "--out", str(tmp_path / "occupied")]) == 2
    assert "--overwrite" in capsys.readouterr().err


INTERRUPT_DYNAMIC = """
from pathlib import Path
from quantlab.atomic import atomic_path
from quantlab.quantize import quantizer
real = quantizer.quantize
def interrupt(folder, scheme, **kw):
    if scheme.name == "dynamic_int8":  # Ctrl-C while its main is being written
        with atomic_path(Path(folder) / "tiny-random-w512_main_dynamic_int8.tflite") as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    return real(folder, scheme, **kw)
quantizer.quantize = interrupt
"""


def test_interrupted_quantize_leaves_no_partial_file_exits_130_and_resumes(lab_copy):
    """Ctrl-C while a new scheme is quantized on a finished run: exit 130 with the resume command, no partial file;
    the resumed run makes only what is missing."""
    argv = ["run", *TINY, "--out", str(lab_copy), "--schemes", "int8,int16_w8,dynamic_int8", "--no-bundle"]
    res = run_cli(argv, patch=INTERRUPT_DYNAMIC)
    assert res.rc == 130, res.err[-3000:]
    assert "interrupted" in res.err and "resume with: quantlab run" in res.err and str(lab_copy) in res.err
    assert [p.name for p in lab_copy.iterdir() if "dynamic_int8" in p.name or ".tmp-" in p.name] == []
    res = run_cli(argv)
    assert res.rc == 0, res.err[-3000:]
    assert "export         0.0 s  (0 run, 1 unchanged)" in res.out
    assert "(1 run, 4 unchanged)" in next(l for l in res.out.splitlines() if l.strip().startswith("quantize"))
    assert (lab_copy / f"{M}_main_dynamic_int8.tflite").is_file()
