"""The search's sensitivity rows one after another (every core each) and side by side (pinned workers), on one folder.

    .venv/bin/python bench/sensitivity_rows_bench.py DIR [--rows 4] [--tokens 256]

DIR: a calibrated artifact folder (`quantlab export --out DIR && quantlab calibrate DIR`). Measures the first `--rows`
rows of the sensitivity table (all int16, all int8, then one op group at int8 at a time: ai-edge-quantizer, then
`--tokens` positions of calibration-domain text scored against FP32) first by the bench itself with every core, then
by `analyze/sensitivity.py`'s worker processes, one per core, and prints both wall times, their ratio and each row's
KL and top-1 both ways (they must agree: the bench exits 1 if a KL differs by more than 1e-6 relative). Nothing else
should run meanwhile.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=256)
    a = ap.parse_args()
    from quantlab.analyze import sensitivity as sens
    from quantlab.quantize.groups import GROUPS, build_recipe

    recipes = [build_recipe(16, {}), build_recipe(8, {})] + [build_recipe(16, {g.name: 8}) for g in GROUPS]
    recipes = recipes[: a.rows]
    bench = sens.Bench(a.dir, tokens=a.tokens)
    workers = sens.row_workers(bench.fp32_path, len(recipes), 2)
    t0 = time.perf_counter()
    alone = bench.measure_all(recipes, quiet=True)
    t_alone = time.perf_counter() - t0
    bench = sens.Bench(a.dir, tokens=a.tokens)
    t0 = time.perf_counter()
    side = bench.measure_all(recipes, quiet=True, jobs=2)
    t_side = time.perf_counter() - t0
    bench.cleanup()
    print(f"{len(recipes)} rows, {len(bench.window)} positions each")
    print(f"one after another, every core: {t_alone:7.1f} s")
    print(f"side by side, {workers} workers:    {t_side:7.1f} s   ({t_alone / t_side:.2f}x)")
    bad = 0
    for i, (x, y) in enumerate(zip(alone, side)):
        same = abs(x["kl"] - y["kl"]) <= 1e-6 * max(abs(x["kl"]), 1e-12)
        bad += not same
        print(f"  row {i}: KL {x['kl']:.6f} / {y['kl']:.6f}  top-1 {x['top1_agreement']:.4f} / "
              f"{y['top1_agreement']:.4f}  {'same' if same else 'DIFFERENT'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
