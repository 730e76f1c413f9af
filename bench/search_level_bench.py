"""The mixed-precision search with its candidates compiled at each QNN optimization level, side by side.

    .venv/bin/python bench/search_level_bench.py DIR [--levels O3,O2] [--tokens 256] [--jobs 2]

DIR is a calibrated artifact folder (after `quantlab calibrate`, e.g. `out` of `./quantlab.sh run`). The sensitivity
table is measured once (as the lab does: `--jobs` rows side by side), then the search runs once per level on it, in
this process, nothing else running. Prints each search's wall time and, per candidate, the expected perplexity
ratio, KL, whether it compiled fully and its coverage; then whether every level chose the same recipe from
candidates with the same coverage and metrics (KL within 1e-6 relative). The folder's analysis.json is not written; kept compiles (O3) are
deleted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    from quantlab.analyze.search import SearchConfig, search
    from quantlab.analyze.sensitivity import Bench, sensitivity
    from quantlab.compile.kept import KeptCompiles

    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--levels", default="O3,O2")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    bench = Bench(a.dir, a.tokens)
    try:
        t0 = time.perf_counter()
        sens = sensitivity(bench, quiet=True, jobs=a.jobs)
        print(f"sensitivity: {time.perf_counter() - t0:.1f} s ({len(sens['rows'])} rows, jobs {a.jobs})", flush=True)
        found = {}
        for level in a.levels.split(","):
            t0 = time.perf_counter()
            found[level] = search(bench, sens, SearchConfig(compile_level=level), quiet=True)
            seconds = time.perf_counter() - t0
            KeptCompiles(a.dir).keep_only(set())
            print(f"search at {level}: {seconds:.1f} s, chosen {found[level]['chosen']}", flush=True)
            for c in found[level]["candidates"]:
                cov = ", ".join(f"{x['ops_offloaded']}/{x['ops_total']} ({x['partitions']})"
                                for x in c["coverage"].values())
                print(f"  {c['name']:45s} expected ×{c['expected_ratio']:.4f} KL {c['kl']:.5f} "
                      f"{'fully offloaded' if c['fully_offloaded'] else 'NOT fully offloaded'}: {cov}", flush=True)
    finally:
        bench.cleanup()

    def same_as(res: dict, ref: dict) -> bool:
        """The same chosen recipe and candidates: names, compile results exactly; KL and the expected ratio within
        1e-6 relative (the scoring's thread count differs while a compile runs beside it)."""
        pairs = list(zip(res["candidates"], ref["candidates"]))
        return res["chosen"] == ref["chosen"] and len(res["candidates"]) == len(ref["candidates"]) and all(
            (c["name"], c["fully_offloaded"], c["coverage"]) == (r["name"], r["fully_offloaded"], r["coverage"])
            and all(abs(c[k] - r[k]) <= 1e-6 * abs(r[k]) for k in ("kl", "expected_ratio")) for c, r in pairs)

    first = next(iter(found.values()))
    same = all(same_as(r, first) for r in found.values())
    print("every level: the same chosen recipe, candidates, metrics and coverage" if same
          else "the levels DIFFER (above)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
