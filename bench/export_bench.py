"""Export time and peak RSS of `quantlab export` per model.

    .venv/bin/python bench/export_bench.py [--models gemma3-270m gemma3-1b-random] [--keep DIR]

Each model is exported in a fresh process (as a user would run it), its process tree's RSS sampled every 0.2 s.
gemma3-1b-random has random weights: its figures are about size and speed only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rss import run_measured  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["gemma3-270m", "gemma3-1b-random"])
    ap.add_argument("--keep", type=Path, default=None, help="keep the artifacts under this folder")
    a = ap.parse_args()
    exe = str(Path(sys.executable).with_name("quantlab"))
    rows = []
    for model in a.models:
        root = a.keep or Path(tempfile.mkdtemp(prefix="qlbench-"))
        out = root / model
        rc, secs, peak, tail = run_measured([exe, "export", "--model", model, "--out", str(out), "--overwrite"])
        if rc != 0:
            print(f"{model}: export failed (exit {rc})\n{tail}")
            return 1
        sizes = {p.name: p.stat().st_size / 1e6 for p in out.glob("*.tflite")}
        rows.append((model, secs, peak, sizes))
        if a.keep is None:
            shutil.rmtree(root)
    print(f"\n{'model':22s} {'export s':>9s} {'peak RSS GB':>12s}  artifacts (MB)")
    for model, secs, peak, sizes in rows:
        tag = " (random weights)" if "random" in model else ""
        arts = ", ".join(f"{n.split('_', 1)[1]} {mb:.0f}" for n, mb in sorted(sizes.items()))
        print(f"{model + tag:22s} {secs:9.1f} {peak:12.2f}  {arts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
