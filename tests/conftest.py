"""Shared fixtures: a tiny random Gemma3 exported once per test session (real litert-torch, real LiteRT)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Small shapes so export takes seconds: 8-token prefill, 64-slot cache. The tiny config's 16-token sliding window
# means a 40-token text already crosses chunk boundaries and the local-attention window.
TINY_PREFILL, TINY_CACHE = 8, 64


@pytest.fixture(scope="session")
def tiny_model():
    from quantlab.models import load_model

    return load_model("tiny-random")


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_model, tmp_path_factory):
    from quantlab.export import ExportConfig, export_model

    out = tmp_path_factory.mktemp("tiny")
    export_model(tiny_model, out, ExportConfig(prefill_len=TINY_PREFILL, cache_len=TINY_CACHE))
    return out


@pytest.fixture(scope="session")
def english_text() -> str:
    """English prose the standard library ships (Python's own documentation topics)."""
    import pydoc_data.topics as topics

    return "\n\n".join(topics.topics[k] for k in ("assignment", "class", "exceptions"))


@pytest.fixture(scope="session")
def quantized(tiny_artifacts, tmp_path_factory):
    """A copy of the tiny artifacts (which stay FP32 only) calibrated on the default text (2 windows) and quantized
    with both schemes. Tests that add to it use `quantized_copy`: session fixtures stay as made, whatever the order."""
    import shutil

    from quantlab.calibration.capture import CapturePlan
    from quantlab.calibration.ranges import calibrate
    from quantlab.quantize.quantizer import quantize
    from quantlab.texts import default_calibration_texts

    from quantlab.evaluate.stored_logits import STORE_DIR

    folder = tmp_path_factory.mktemp("quantized") / "tiny"
    # (not the FP32 logits an earlier test's `eval` of the tiny artifacts stored: tests count this folder's own)
    shutil.copytree(tiny_artifacts, folder, ignore=shutil.ignore_patterns(STORE_DIR))
    meta = calibrate(folder, default_calibration_texts(), CapturePlan(windows=2), quiet=True)
    for scheme in ("int8", "int16_w8"):
        quantize(folder, scheme, quiet=True)
    return folder, meta


# The tiny shape with Gemma3's 512-token window (so that the lab bundles it for LiteRT-LM), 8-token prefill, 64 slots.
LAB_MODEL = "tiny-random-w512"
LAB_ARGS = ["--model", LAB_MODEL, "--prefill-len", "8", "--cache-len", "64"]


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """A finished default `quantlab run` (search, three schemes' mains, compiles, bundles, both runtimes' scores) on the
    tiny model, made once; tests that change a run work on a copy (`lab_copy`)."""
    from tests.helpers import run_cli

    out = tmp_path_factory.mktemp("lab") / "run"
    res = run_cli(["run", *LAB_ARGS, "--out", str(out)])
    assert res.rc == 0, res.err[-3000:]
    return out


@pytest.fixture
def lab_copy(lab, tmp_path):
    """A copy of the finished run, for a test that changes it."""
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(lab, dst)
    return dst


@pytest.fixture
def quantized_copy(quantized, tmp_path):
    """A private copy of the quantized folder, for a test that writes into it."""
    import shutil

    folder = tmp_path / "quantized"
    shutil.copytree(quantized[0], folder)
    return folder, quantized[1]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A real local Ray cluster on 127.0.0.1: a head and a worker process, each 2 CPUs and 3 GiB for tasks; its
    address. Without token authentication (RAY_AUTH_MODE=disabled, for its clients too): Ray 2.60 turns it on once a
    local `ray.init()` has written ~/.ray/auth_token, and then refuses the worker node."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    ray = str(Path(sys.executable).with_name("ray"))
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tmp_path_factory.mktemp("ray")
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=2", f"--memory={3 * 2**30}", "--disable-usage-stats"]
    subprocess.run([ray, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={tmp}",
                    *common], check=True, capture_output=True, env=env, timeout=120)
    try:
        subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", *common], check=True, capture_output=True,
                       env=env, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
