"""QNN compile time, peak RSS, size and NPU coverage of the same mains at each graph optimization level, side by side.

    .venv/bin/python bench/compile_level_bench.py MAIN [MAIN ...] [--soc SM8750] [--levels O2,O3]

Each MAIN (a quantized main .tflite, e.g. `out/gemma3-270m_main_int16_w8.tflite`) is compiled once per level with
quantlab's compiler (`compile_model(..., opt_level=L, reuse_kept=False)`: LiteRT's apply_plugin_main with the
Qualcomm plugin, one process, nothing else running), into a temporary folder. Prints one row per main and level,
then per main the time ratio to the last level and whether every signature's offloaded ops, op total and partition
count are the same at every level (the search compiles its candidates at O2 to check them: compile/compiler.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main() -> int:
    from quantlab.compile.compiler import compile_model
    from quantlab.compile.levels import OPT_LEVELS

    ap = argparse.ArgumentParser()
    ap.add_argument("mains", type=Path, nargs="+")
    ap.add_argument("--soc", default="SM8750")
    ap.add_argument("--levels", default="O2,O3", help=f"comma-separated, of {', '.join(OPT_LEVELS)}")
    a = ap.parse_args()
    levels = a.levels.split(",")
    if any(lv not in OPT_LEVELS for lv in levels) or not all(p.is_file() for p in a.mains):
        print(f"levels must be among {', '.join(OPT_LEVELS)} and every MAIN a file", file=sys.stderr)
        return 2
    print(f"{'main':44s} {'level':5s} {'seconds':>8s} {'peak GB':>8s} {'MB':>8s}  coverage (signature: offloaded/total, "
          "partitions)")
    same_everywhere = True
    for path in a.mains:
        rows = {}
        with tempfile.TemporaryDirectory(prefix="compile-level-") as tmp:
            for lv in levels:
                res = compile_model(path, a.soc, Path(tmp) / f"{lv}.tflite", reuse_kept=False, opt_level=lv)
                cov = {s: (c["ops_offloaded"], c["ops_total"], c["partitions"]) for s, c in res.coverage.items()}
                rows[lv] = (res.seconds, cov)
                print(f"{path.name[-44:]:44s} {lv:5s} {res.seconds:8.1f} {res.peak_rss_mb / 1e3:8.2f} "
                      f"{res.bytes / 1e6:8.1f}  " + ", ".join(f"{s}: {o}/{t}, {p}" for s, (o, t, p) in cov.items()),
                      flush=True)
        last = rows[levels[-1]]
        same = all(r[1] == last[1] for r in rows.values())
        same_everywhere &= same
        ratios = ", ".join(f"{lv} ×{rows[lv][0] / last[0]:.3f}" for lv in levels[:-1])
        print(f"  {path.name}: time against {levels[-1]}: {ratios}; coverage {'the same' if same else 'DIFFERS'} "
              "at every level")
    print("coverage the same for every main" if same_everywhere else "coverage DIFFERS for some main")
    return 0 if same_everywhere else 1


if __name__ == "__main__":
    sys.exit(main())
