"""`quantlab sweep` on a real local Ray cluster (a head and a worker process on 127.0.0.1): two tiny models × two
schemes × two SoCs, one lab per model, its steps as Ray tasks, merged into one comparison report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")  # as the `cluster` fixture's


def test_sweep_of_two_models_two_schemes_two_socs_on_a_ray_cluster(cluster, tmp_path):
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "quantlab.cli", "sweep", "--models", "tiny-random,tiny-random-w512",
            "--schemes", "int8,int16_w8", "--soc", "SM8750", "--soc", "SM8650", "--out", str(out),
            "--ray-address", cluster, "--no-analyze", "--no-bundle", "--no-per-op", "--eval-tokens", "24",
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
    for m in ("tiny-random", "tiny-random-w512"):  # each lab's steps ran as Ray tasks on the cluster's nodes
        steps = json.loads((out / m / ".quantlab-run.json").read_text())["steps"]
        assert {"export", "quantize:int8", "compile:int16_w8:SM8650"} <= set(steps)
        assert all(len(r["where"]["node"]) == 56 for r in steps.values()), steps
    assert (out / "tiny-random" / "report.html").is_file() and (out / "tiny-random-w512" / "manifest.json").is_file()


def test_sweep_bad_input_is_one_line_before_ray_starts(tmp_path):
    p = subprocess.run([sys.executable, "-m", "quantlab.cli", "sweep", "--models", "tiny-random", "--soc", "SM0000",
                        "--out", str(tmp_path / "s")], capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().startswith("quantlab: error:") and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
