"""The lab's short stages (quantize, check, compile, bundle) one step at a time and a step per core, on one folder.

    .venv/bin/python bench/short_stages_bench.py DIR [RUN OPTIONS ...]

DIR: a finished lab (`quantlab run --out DIR [RUN OPTIONS ...]`; give the options it was run with, none for the
default lab). The bench forgets the run state's records of those four
stages, runs `quantlab run --out DIR --jobs 1` (one step at a time on every core: the default before 2026-12-03),
forgets them again and runs `quantlab run --out DIR` (the default: a step per core in those stages). The steps' keys
come out as before, so the search, the scoring and everything else are skipped both times; every compile is a real
one (the search's kept compiles were taken by the first run). Prints each stage's wall seconds both ways and the
ratio, and exits 1 if any step's result differs between the two (compile times and peaks aside). Nothing else should
run meanwhile. The folder's run state is restored at the end; its files are rewritten with the same bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SHORT = ("quantize", "check", "compile", "bundle")
# Differ between two compiles of the same bytes; `reused`: the first run may take a compile the search kept.
VOLATILE = {"seconds", "peak_rss_mb", "reused"}


def forget(state_file: Path) -> None:
    data = json.loads(state_file.read_text())
    data["steps"] = {k: v for k, v in data["steps"].items() if k.split(":")[0] not in SHORT}
    state_file.write_text(json.dumps(data, indent=1))


def run(folder: Path, *extra: str) -> dict:
    """One `quantlab run` redoing the short stages; returns each stage's wall seconds and the steps' results."""
    forget(folder / ".quantlab-run.json")
    done = subprocess.run([sys.executable, "-m", "quantlab.cli", "run", "--out", str(folder), *extra],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"quantlab run failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    manifest = json.loads((folder / "manifest.json").read_text())
    steps = json.loads((folder / ".quantlab-run.json").read_text())["steps"]
    wall = {s: (manifest["timings"].get(s) or {}).get("wall_seconds") for s in SHORT}
    results = {k: v["result"] for k, v in steps.items() if k.split(":")[0] in SHORT}
    return {"wall": wall, "results": results}


def stable(result):
    return {k: v for k, v in result.items() if k not in VOLATILE} if isinstance(result, dict) else result


def main() -> int:
    if len(sys.argv) < 2 or not (Path(sys.argv[1]) / ".quantlab-run.json").is_file():
        print("usage: short_stages_bench.py DIR [RUN OPTIONS ...]  (a finished `quantlab run --out DIR ...`)",
              file=sys.stderr)
        return 2
    folder, options = Path(sys.argv[1]), sys.argv[2:]
    saved = (folder / ".quantlab-run.json").read_text()
    try:
        one = run(folder, *options, "--jobs", "1")
        side = run(folder, *options)
    finally:
        (folder / ".quantlab-run.json").write_text(saved)
    print(f"{'stage':10s} {'one at a time (s)':>18s} {'a step per core (s)':>20s} {'ratio':>6s}")
    for s in SHORT:
        a, b = one["wall"][s] or 0.0, side["wall"][s] or 0.0
        print(f"{s:10s} {a:18.1f} {b:20.1f} {a / b if b else float('nan'):6.2f}")
    ta, tb = sum(v or 0 for v in one["wall"].values()), sum(v or 0 for v in side["wall"].values())
    print(f"{'all four':10s} {ta:18.1f} {tb:20.1f} {ta / tb:6.2f}")
    differ = [k for k in one["results"] if stable(one["results"][k]) != stable(side["results"].get(k))]
    print("same results both ways" if not differ else f"results differ: {', '.join(differ)}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
