"""`quantlab sweep` on a real local Ray cluster (a head and a worker process on 127.0.0.1): two tiny models × two
schemes × two SoCs, one lab per model, its steps as Ray tasks, merged into one comparison report; the lab of the
session's local run (`lab`, tests/conftest.py) made there as Ray tasks is the local lab's, byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantlab import manifest
from tests.conftest import LAB_MODEL

ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")  # as the `cluster` fixture's


def _node_ids(address: str) -> set[str]:
    code = (f"import json, ray; ray.init(address={address!r}, log_to_driver=False); "
            "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return set(json.loads(p.stdout.strip().splitlines()[-1]))


def test_sweep_of_two_models_two_schemes_two_socs_on_a_ray_cluster(cluster, lab, tmp_path):
    """Besides the sweep's own report: the tiny-random-w512 lab, run with the session's local lab's options (all but
    the search, per-op SNR and bundles, which change no main), builds the same fp32 and int16_w8 mains (sha256) and
    scores int16_w8 the same (perplexity, KL, top-1, largest logit difference within 1e-9: the same bytes on the same
    kernels); every step of both labs ran as a Ray task of its own (a fresh worker process) on a node of the cluster."""
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "quantlab.cli", "sweep", "--models", f"tiny-random,{LAB_MODEL}",
            "--schemes", "int8,int16_w8", "--soc", "SM8750", "--soc", "SM8650", "--out", str(out),
            "--ray-address", cluster, "--no-analyze", "--no-bundle", "--no-per-op",
            "--prefill-len", "8", "--cache-len", "64"]
    p = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    data = json.loads((out / "sweep.json").read_text())
    assert {lab["model"] for lab in data["labs"]} == {"tiny-random", "tiny-random-w512"}
    assert all(lab["returncode"] == 0 for lab in data["labs"])
    pts = data["points"]
    # every model × scheme × SoC has a compiled point, plus the uncompiled mains (fp32 included)
    for m in ("tiny-random", "tiny-random-w512"):
        for v in ("int8", "int16_w8"):
            for soc in ("SM8750", "SM8650"):
                assert any(x["model"] == m and x["variant"] == v and x["soc"] == soc and x["fully_offloaded"]
                           for x in pts), (m, v, soc)
    assert data["pareto"] and all(len(k) == 3 for k in data["pareto"])
    md = (out / "sweep.md").read_text()
    assert "## NPU coverage per SoC" in md and "| SM8650 |" in md and "random weights" in md
    nodes, pids = _node_ids(cluster), []
    for m in ("tiny-random", LAB_MODEL):  # each lab's steps ran as Ray tasks on the cluster's nodes
        steps = json.loads((out / m / ".quantlab-run.json").read_text())["steps"]
        assert {"export", "calibrate", "quantize:int8", "compile:int16_w8:SM8650", "evaluate:int16_w8"} <= set(steps)
        assert all(rec["where"]["node"] in nodes for rec in steps.values()), steps
        assert "Ray: 2 node(s), 4 CPUs" in (out / m / "quantlab.log").read_text()  # the lab joined the whole cluster
        pids += [rec["where"]["pid"] for rec in steps.values()]
    assert len(set(pids)) == len(pids)  # max_calls=1: a fresh worker per step, its memory back when it ends
    ours, local = manifest.load(out / LAB_MODEL), manifest.load(lab)
    for v in ("fp32", "int16_w8"):
        assert ours.artifacts[v].sha256 == local.artifacts[v].sha256, v
    a, b = ours.artifacts["int16_w8"].metrics, local.artifacts["int16_w8"].metrics
    assert a.tokens_scored == b.tokens_scored > 0
    for k in ("perplexity", "kl", "top1_agreement", "max_abs_logit_diff"):
        assert abs(getattr(a, k) - getattr(b, k)) <= 1e-9 * abs(getattr(b, k)), (k, getattr(a, k), getattr(b, k))
    assert ours.artifacts["int16_w8"].compiled["SM8750"].coverage == local.artifacts["int16_w8"].compiled["SM8750"].coverage
    assert (out / "tiny-random" / "report.html").is_file() and (out / "tiny-random-w512" / "manifest.json").is_file()


@pytest.mark.parametrize("bad", [["--soc", "SM0000"], ["--ray-address", "127.0.0.1:1"]])
def test_sweep_bad_input_is_one_line_before_ray_starts(tmp_path, bad):
    p = subprocess.run([sys.executable, "-m", "quantlab.cli", "sweep", "--models", "tiny-random", *bad,
                        "--out", str(tmp_path / "s")], capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().startswith("quantlab: error:") and len(p.stderr.strip().splitlines()) == 1
    assert bad[1] in p.stderr and not (tmp_path / "s").exists()
