"""Calibration time and peak RSS, two ways side by side: `--compare capture` (default) runs the profiler capture
(quantlab's default) against ai-edge-quantizer's all-tensor capture; `--compare head` runs decode's LM head on the host
(quantlab's default) against the head in the model; `--compare processes` the windows in one process against side by
side in worker processes (quantlab's default where the cores and memory allow).

    .venv/bin/python bench/calibration_bench.py DIR [--samples 2] [--compare capture|head|processes]

DIR is an exported artifact folder (e.g. `out` after `./quantlab.sh run`, or `quantlab export --out DIR`). Each way
runs `quantlab calibrate` on a copy of DIR's manifest/tokenizer/FP32 files in a fresh process; the process tree's RSS
is sampled every 0.2 s. Prints both rows, the ratios, and how far apart the two calibration.json files' ranges are.
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
    ap.add_argument("--compare", choices=tuple(WAYS), default="capture")
    a = ap.parse_args()
    exe = str(Path(sys.executable).with_name("quantlab"))
    root = Path(tempfile.mkdtemp(prefix="qlcalib-"))
    rows, ranges = [], {}
    try:
        for mode, opts in WAYS[a.compare].items():
            folder = root / mode
            _copy(a.dir, folder)
            rc, secs, peak_gb, tail = run_measured([exe, "calibrate", str(folder), "--samples", str(a.samples),
                                                    *opts])
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
    print(f"{a.compare:12s} {'seconds':>8s} {'peak RSS GB':>12s}")
    for mode, secs, peak in rows:
        print(f"{mode:12s} {secs:8.1f} {peak:12.2f}")
    (base, s_base, m_base), (new, s_new, m_new) = rows
    print(f"{new} / {base}: time x{s_new / s_base:.2f}, peak RSS x{m_new / m_base:.2f}")
    old_r, new_r = ranges[base], ranges[new]
    apart = {n: max(_apart(new_r[n][k], q[k]) for k in ("min", "max")) for n, q in old_r.items() if "max" in q}
    differ = sorted(((d, n) for n, d in apart.items() if d > 0), reverse=True)
    print(f"ranges of the {base} run: {len(apart)}; bit for bit in the {new} run: {len(apart) - len(differ)}; "
          f"largest relative difference: " + (f"{differ[0][0]:.1e} ({differ[0][1]})" if differ else "none"))
    return 0


# Each comparison: the baseline first, quantlab's default second (the options `quantlab calibrate` gets).
WAYS = {"capture": {"all_tensors": ["--capture", "all_tensors"], "profiler": ["--capture", "profiler"]},
        "head": {"model_head": ["--head", "model"], "host_head": ["--head", "host"]},
        "processes": {"one_process": ["--processes", "1"], "side_by_side": []}}


def _apart(a, b) -> float:
    """The largest relative difference between two ranges' values (per-tensor ones come as (1,) or (1, 1, 1))."""
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


if __name__ == "__main__":
    raise SystemExit(main())
