"""Bad input through the CLI: exit 2, one line naming the fix, no traceback, no partial file."""

from __future__ import annotations

import pytest

from quantlab import cli


def _run(capsys, *argv):
    rc = cli.main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def _one_line_error(rc, err):
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("quantlab: error:"), err
    assert "Traceback" not in err[0]


@pytest.mark.parametrize("command", ["", "run", "export", "calibrate", "quantize", "analyze", "check", "compile",
                                     "bundle", "eval", "generate", "report", "sweep"])
def test_every_help_page_renders(capsys, command):
    """argparse formats help strings with %: a measured "+2.2 %" in a help text once crashed `quantlab --help`."""
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"] if command else ["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: quantlab") and (command in out)


def test_unknown_model(capsys, tmp_path):
    rc, err = _run(capsys, "export", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    _one_line_error(rc, err)
    assert "gemma3-270m" in err[0]  # lists what is accepted


def test_bad_export_config(capsys, tmp_path):
    rc, err = _run(capsys, "export", "--model", "tiny-random", "--out", str(tmp_path / "o"),
                   "--prefill-len", "64", "--cache-len", "32")
    _one_line_error(rc, err)
    assert "--cache-len" in err[0]


def test_existing_output_needs_overwrite(capsys, tiny_artifacts):
    rc, err = _run(capsys, "export", "--model", "tiny-random", "--out", str(tiny_artifacts))
    _one_line_error(rc, err)
    assert "--overwrite" in err[0]


def test_prompt_longer_than_cache(capsys, tiny_artifacts):
    rc, err = _run(capsys, "generate", str(tiny_artifacts), "--prompt", "word " * 200)
    _one_line_error(rc, err)
    assert "cache" in err[0]


def test_eval_missing_and_empty_text(capsys, tiny_artifacts, tmp_path):
    rc, err = _run(capsys, "eval", str(tiny_artifacts), "--text", str(tmp_path / "none.txt"))
    _one_line_error(rc, err)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    rc, err = _run(capsys, "eval", str(tiny_artifacts), "--text", str(empty))
    _one_line_error(rc, err)
    assert "empty" in err[0]


def test_unknown_variant_lists_available(capsys, tiny_artifacts):
    rc, err = _run(capsys, "generate", str(tiny_artifacts), "--variant", "int4", "--prompt", "hi")
    _one_line_error(rc, err)
    assert "fp32" in err[0]


def test_corrupt_tflite(capsys, tiny_artifacts, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifacts, broken)
    main = next(broken.glob("*_main_fp32.tflite"))
    main.write_bytes(main.read_bytes()[:1000])
    rc, err = _run(capsys, "generate", str(broken), "--prompt", "hi")
    _one_line_error(rc, err)
    assert "not a valid LiteRT model" in err[0]


def test_generate_prints_continuation(capsys, tiny_artifacts):
    rc = cli.main(["generate", str(tiny_artifacts), "--prompt", "Hello", "--max-new-tokens", "4"])
    out = capsys.readouterr()
    assert rc == 0
    assert out.out.startswith("Hello")
    assert "random weights" in out.err and "tok/s" in out.err


def test_eval_json(capsys, tiny_artifacts, english_text, tmp_path):
    import json

    text = tmp_path / "t.txt"
    text.write_text(english_text)
    rc = cli.main(["eval", str(tiny_artifacts), "--text", str(text), "--max-tokens", "70", "--json",
                   "--decode-steps", "2"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["random_weights"] and res["tokens_scored"] == 70


def test_interrupted_export_leaves_no_partial_file(tiny_model, tmp_path, monkeypatch):
    """Ctrl-C while main is being written: no .tflite (final or temporary) for main, no manifest."""
    from quantlab.export import ExportConfig, exporter

    real = exporter._convert

    def convert_then_interrupt(module, signatures, path):
        if "_main_" not in path.name:
            return real(module, signatures, path)
        from quantlab.atomic import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half a model")
            raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "_convert", convert_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        exporter.export_model(tiny_model, tmp_path, ExportConfig(prefill_len=8, cache_len=16))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not any("_main_" in n for n in names), names
    assert "manifest.json" not in names


def test_analyze_and_smooth_bad_input(capsys, tiny_artifacts, tmp_path):
    import shutil

    folder = tmp_path / "uncalibrated"
    shutil.copytree(tiny_artifacts, folder, ignore=shutil.ignore_patterns("calibration.json", "*int*"))
    rc, err = _run(capsys, "analyze", str(folder))
    _one_line_error(rc, err)
    assert "quantlab calibrate" in err[0]  # names the fix
    rc, err = _run(capsys, "analyze", str(tiny_artifacts), "--tolerance", "0.5")
    _one_line_error(rc, err)
    rc, err = _run(capsys, "analyze", str(tiny_artifacts), "--soc", "SM0000")
    _one_line_error(rc, err)
    assert "SM8750" in err[0]
    rc, err = _run(capsys, "analyze", str(tiny_artifacts), "--opt-level", "O4")
    _one_line_error(rc, err)
    assert "O2" in err[0]
    rc, err = _run(capsys, "export", "--model", "tiny-random", "--out", str(tmp_path / "s"), "--smooth", "1.5")
    _one_line_error(rc, err)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


@pytest.mark.parametrize("bad, named", [(["--decode-stride", "-1"], "decode_stride"),
                                        (["--processes", "0"], "--processes")])
def test_calibrate_bad_numbers(capsys, tiny_artifacts, bad, named):
    before = (tiny_artifacts / "manifest.json").read_bytes()
    rc, err = _run(capsys, "calibrate", str(tiny_artifacts), *bad)
    _one_line_error(rc, err)
    assert named in err[0]
    assert (tiny_artifacts / "manifest.json").read_bytes() == before
    assert not (tiny_artifacts / "calibration.json").exists()


def test_more_bad_inputs_exit_2(capsys, tiny_artifacts, tmp_path):
    """`export --out` naming a file, `compile --out` with two SoCs, `eval --per-op` of fp32: one line each, exit 2."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    rc, err = _run(capsys, "export", "--model", "tiny-random", "--out", str(a_file))
    _one_line_error(rc, err)
    assert "is a file" in err[0] and a_file.read_text() == "not a folder"
    main = tiny_artifacts / "tiny-random_main_fp32.tflite"
    rc, err = _run(capsys, "compile", str(main), "--soc", "SM8750", "--soc", "SM8650", "--out", str(tmp_path / "x"))
    _one_line_error(rc, err)
    assert "one --soc" in err[0]
    rc, err = _run(capsys, "eval", str(tiny_artifacts), "--text", str(a_file), "--per-op")
    _one_line_error(rc, err)
    assert "--variant" in err[0]


def test_library_log_records_go_to_the_log_file_and_quantlabs_to_the_terminal(tmp_path):
    """A library warning through Python's logging (LiteRT-LM warns through the root logger when it scores a bundle)
    lands in the log file; quantlab's own warning reaches the terminal. A real process: real descriptors."""
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from quantlab.console import log_to_terminal, quiet\n"
        "log_to_terminal()\n"
        "with quiet(Path(sys.argv[1])):\n"
        "    logging.warning('root logger: NPU backend is initialized with an empty dir')\n"
        "    logging.getLogger('some_library').warning('library logger says')\n"
        "    logging.getLogger('quantlab.quantize').warning('quantlab says')\n"
    )
    log = tmp_path / "quantlab.log"
    p = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == "quantlab: WARNING: quantlab says", p.stderr
    text = log.read_text()
    assert "root logger: NPU backend" in text and "some_library: WARNING: library logger says" in text


def test_standalone_command_keeps_library_output_in_the_folder_log(tiny_artifacts, tmp_path):
    """A real process, so the libraries write to the real descriptors: LiteRT's C++ "INFO: Created TensorFlow Lite
    XNNPACK delegate" line goes to DIR/quantlab.log, the terminal gets the text (stdout) and quantlab's own summary
    line (stderr) only; --verbose puts the library line back on the terminal."""
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "copy"
    shutil.copytree(tiny_artifacts, folder)
    argv = [sys.executable, "-m", "quantlab.cli", "generate", str(folder), "--prompt", "Hello", "--max-new-tokens", "2"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Hello")
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("[tiny-random (random weights) fp32, cpu]"), p.stderr
    log = (folder / "quantlab.log").read_text()
    assert "XNNPACK" in log and "generate" in log
    p = subprocess.run(argv + ["--verbose"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "XNNPACK" in p.stderr
