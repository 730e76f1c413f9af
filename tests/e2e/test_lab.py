"""`quantlab run` end to end on the tiny random Gemma3: artifacts, report, resume, bad inputs, interruption."""

from __future__ import annotations

import json

import pytest

from quantlab import cli

TINY = ["--model", "tiny-random", "--prefill-len", "8", "--cache-len", "64"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab") / "run"
    assert cli.main(["run", *TINY, "--out", str(out)]) == 0
    return out


def test_layout_and_manifest(lab):
    names = {p.name for p in lab.iterdir()}
    for f in ("tiny-random_embedder_fp32.tflite", "tiny-random_embedder_int8.tflite", "tiny-random_main_fp32.tflite",
              "tiny-random_main_int8.tflite", "tiny-random_main_int16_w8.tflite", "tiny-random_main_int8_aot_sm8750.tflite",
              "tiny-random_main_int16_w8_aot_sm8750.tflite", "calibration.json", "manifest.json", "report.md",
              "report.html", "tokenizer"):
        assert f in names, f
    data = json.loads((lab / "manifest.json").read_text())
    assert data["format_version"] == 1 and data["versions"]["litert-torch"] == "0.10.0"
    for v in ("fp32", "int8", "int16_w8"):
        a = data["artifacts"][v]
        assert a["metrics"]["perplexity"] > 0 and a["metrics"]["speed"]["decode_tokens_per_s"] > 0
        assert a["check"]["violations"] == []
    assert data["artifacts"]["int8"]["npu_sm8750"]["coverage"]["decode"]["partitions"] == 1
    assert set(data["timings_s"]["lab"]) >= {"export", "calibrate", "quantize", "check", "compile", "evaluate"}


def test_mixed_variant_from_the_search_is_built_compiled_and_reported(lab):
    """The analyze stage chose a recipe that compiles fully; the lab built it as a third variant named for it."""
    analysis = json.loads((lab / "analysis.json").read_text())
    search = analysis["search"]
    chosen = next(c for c in search["candidates"] if c["name"] == search["chosen"])
    assert chosen["fully_offloaded"] and chosen["qnn_rule_violations"] == 0 and chosen["int8_groups"]
    # every op group has a row, each measured (KL is a real number, not a placeholder)
    assert {r["group"] for r in analysis["sensitivity"]["rows"]} >= {"attention", "norms", "lm_head", "mlp_down"}
    assert all(r["kl_8"] > 0 for r in analysis["sensitivity"]["rows"])
    recipe = lab / "recipes" / f"{search['chosen']}.json"
    from quantlab.quantize.recipes import load_recipe, variant_name

    assert load_recipe(str(recipe)) == chosen["recipe"] and variant_name(str(recipe)) == search["chosen"]
    assert analysis["format_version"] == 1
    data = json.loads((lab / "manifest.json").read_text())
    art = data["artifacts"][search["chosen"]]
    # the built variant has int8 activations on exactly the share of FC weights the search said
    assert art["int8_fc_share"] == pytest.approx(chosen["int8_weight_share"], abs=1e-3)
    cov = art["npu_sm8750"]["coverage"]
    assert all(c["ops_offloaded"] == c["ops_total"] for c in cov.values())
    assert art["metrics"]["kl"] > 0 and art["check"]["violations"] == []
    md = (lab / "report.md").read_text()
    assert "## Sensitivity by op group" in md and "## Mixed-precision search" in md and "Pareto front" in md


def test_report_says_random_weights_and_embeds_plots(lab):
    md = (lab / "report.md").read_text()
    assert "random weights" in md and "## Selection guide" in md and "| int8 | SM8750 |" in md
    page = (lab / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 5  # incl. the Pareto front and the sensitivity plot
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched


def test_second_run_skips_everything_and_new_scheme_redoes_only_it(lab, capsys):
    assert cli.main(["run", *TINY, "--out", str(lab)]) == 0
    out = capsys.readouterr().out
    for stage in ("export", "calibrate", "analyze", "quantize", "check", "compile", "evaluate"):
        line = next(l for l in out.splitlines() if l.strip().startswith(stage))
        assert "(0 run," in line, line
    # Only int8 now: nothing new to do either (int8's steps are unchanged).
    assert cli.main(["run", *TINY, "--out", str(lab), "--schemes", "int8"]) == 0
    # (the analyze stage's chosen recipe is built alongside whatever schemes are named)
    # (int8, the chosen recipe, and the int8 embedder they ship with)
    assert "quantize       0.0 s  (0 run, 3 unchanged)" in capsys.readouterr().out


def test_bad_inputs_exit_2_with_one_line(lab, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "x").write_text("not a run")
    cases = [
        ["--schemes", "int4"],
        ["--soc", "SM0000"],
        ["--eval-text", str(empty)],
        ["--calib-text", str(tmp_path / "missing.txt")],
        ["--prefill-len", "64", "--cache-len", "32"],
    ]
    for extra in cases:
        assert cli.main(["run", *TINY, "--out", str(lab), *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("quantlab: error:"), (extra, err)
    assert cli.main(["run", *TINY, "--out", str(tmp_path / "occupied")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_interrupted_quantize_leaves_no_partial_file_and_resumes(tmp_path, monkeypatch, capsys):
    from quantlab.quantize import quantizer

    out = tmp_path / "run"
    real = quantizer.quantize

    def interrupt_second(folder, scheme, **kw):
        # (a check on the scheme, not a call counter: each lab step runs in a forked child that does not share one)
        if scheme == "int16_w8":  # Ctrl-C while the second scheme is being written
            from quantlab.atomic import atomic_path

            with atomic_path(folder / "tiny-random_main_int16_w8.tflite") as tmp:
                tmp.write_bytes(b"partial")
                raise KeyboardInterrupt
        return real(folder, scheme, **kw)

    monkeypatch.setattr(quantizer, "quantize", interrupt_second)
    assert cli.main(["run", *TINY, "--out", str(out), "--soc", "SM8750", "--no-analyze"]) == 2
    assert "interrupted" in capsys.readouterr().err
    leftovers = [p.name for p in out.iterdir() if "int16_w8" in p.name or ".tmp-" in p.name]
    assert leftovers == []
    monkeypatch.setattr(quantizer, "quantize", real)
    assert cli.main(["run", *TINY, "--out", str(out), "--no-analyze"]) == 0
    res = capsys.readouterr().out
    assert "export         0.0 s  (0 run, 1 unchanged)" in res
    assert (out / "tiny-random_main_int16_w8.tflite").is_file()
