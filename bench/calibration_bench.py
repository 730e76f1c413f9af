"""Calibration time and peak RSS: profiler capture (quantlab's default) against ai-edge-quantizer's all-tensor capture.

    .venv/bin/python bench/calibration_bench.py DIR [--samples 2]

DIR is an exported artifact folder (e.g. `out` after `./quantlab.sh run`, or `quantlab export --out DIR`). Each mode
runs `quantlab calibrate` on a copy of DIR's manifest/tokenizer/FP32 files in a fresh process; the process tree's RSS
is sampled every 0.2 s. Prints both rows, the ratios, and whether the two calibration.json files hold the same ranges.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from rss import run_measured  # noqa: E402


def _copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name in ("manifest.json", "tokenizer") or p.name.endswith("_fp32.tflite"):
            (shutil.copytree if p.is_dir() else shutil.copy)(p, dst / p.name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--samples", type=int, default=2)
    a = ap.parse_args()
    exe = str(Path(sys.executable).with_name("quantlab"))
    root = Path(tempfile.mkdtemp(prefix="qlcalib-"))
    rows, ranges = [], {}
    try:
        for mode in ("all_tensors", "profiler"):
            folder = root / mode
            _copy(a.dir, folder)
            rc, secs, peak_gb, tail = run_measured([exe, "calibrate", str(folder), "--samples", str(a.samples),
                                                    "--capture", mode])
            if rc != 0:
                print(f"{mode}: calibrate failed (exit {rc}):\n{tail}")
                return 1
            rows.append((mode, secs, peak_gb))
            ranges[mode] = json.loads((folder / "calibration.json").read_text())["model_qsvs"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    model = json.loads((a.dir / "manifest.json").read_text())["model"]
    tag = " (random weights)" if model.get("random_weights") else ""
    print(f"{model['name']}{tag}, {a.samples} windows of the cache length")
    print(f"{'capture':12s} {'seconds':>8s} {'peak RSS GB':>12s}")
    for mode, secs, peak in rows:
        print(f"{mode:12s} {secs:8.1f} {peak:12.2f}")
    (_, s_all, m_all), (_, s_prof, m_prof) = rows
    print(f"profiler / all_tensors: time x{s_prof / s_all:.2f}, peak RSS x{m_prof / m_all:.2f}")
    full, prof = ranges["all_tensors"], ranges["profiler"]
    same = all(np.allclose(np.ravel(prof[n]["max"]), np.ravel(q["max"]))
               and np.allclose(np.ravel(prof[n]["min"]), np.ravel(q["min"])) for n, q in full.items() if "max" in q)
    print(f"ranges identical on all {len(full)} tensors of the all-tensor run: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
