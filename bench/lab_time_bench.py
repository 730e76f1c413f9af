"""Where a lab's time and memory went, per stage, from its own records (the run state every step writes).

    .venv/bin/python bench/lab_time_bench.py RUN_DIR [OTHER_RUN_DIR]

Prints, for each stage, its wall seconds in the folder's last run (steps of a stage run side by side, so this is
what the stage cost the run; "—" where the manifest predates it), the seconds its steps took added up, how many steps,
the peak RSS of the processes they ran in, and the cores its steps kept busy (their CPU seconds ÷ their seconds;
"—" for a run from before steps recorded their CPU time); with two folders, the two side by side and the ratio of
their stage times (wall where both have it, else step seconds). The figures are what each step measured when it ran (a step
skipped on a re-run keeps its earlier figure), so run the lab fresh (`--overwrite` or a new --out) to time it; note
any other heavy job that shared the machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def stages(folder: Path) -> tuple[dict[str, dict], float | None]:
    state = json.loads((folder / ".quantlab-run.json").read_text())["steps"]
    out: dict[str, dict] = {}
    for step, rec in state.items():
        t = out.setdefault(step.split(":")[0], {"seconds": 0.0, "steps": 0, "peak_gb": 0.0, "cpu": 0.0, "timed": 0.0})
        t["seconds"] += rec["seconds"]
        if rec.get("cpu_s") is not None:
            t["cpu"] += rec["cpu_s"]
            t["timed"] += rec["seconds"]
        t["steps"] += 1
        t["peak_gb"] = max(t["peak_gb"], (rec.get("rss_mb") or 0) / 1e3)
    manifest = json.loads((folder / "manifest.json").read_text())
    for stage, t in (manifest.get("timings") or {}).items():
        if stage in out:
            out[stage]["wall"] = t.get("wall_seconds")
    return out, manifest.get("last_run_seconds")


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    runs = [(Path(a), *stages(Path(a))) for a in argv]
    names = list(dict.fromkeys(s for _, st, _ in runs for s in st))
    head = f"{'stage':10s}" + "".join(f" {str(f)[-28:]:>58s}" for f, _, _ in runs) + ("   ratio" if len(runs) == 2 else "")
    print(head)
    for s in names:
        cells = []
        for _, st, _ in runs:
            t = st.get(s)
            wall = f"{t['wall']:7.1f}" if t and t.get("wall") is not None else f"{'—':>7s}"
            cores = f"{t['cpu'] / t['timed']:4.2f}" if t and t["timed"] else f"{'—':>4s}"
            cells.append(f"{wall} s wall {t['seconds']:7.1f} s steps {t['steps']:3d} {t['peak_gb']:5.1f} GB {cores} cores"
                         if t else f"{'—':>58s}")
        ratio = ""
        if len(runs) == 2 and s in runs[0][1] and s in runs[1][1]:
            a, b = runs[0][1][s], runs[1][1][s]
            key = "wall" if a.get("wall") and b.get("wall") else "seconds"
            ratio = f"   {b[key] / a[key]:.2f}" if a[key] else ""
        print(f"{s:10s}" + "".join(f" {c:>58s}" for c in cells) + ratio)
    totals = [sum(t["seconds"] for t in st.values()) for _, st, _ in runs]
    peaks = [max(t["peak_gb"] for t in st.values()) for _, st, _ in runs]
    print(f"{'all steps':10s}" + "".join(f" {t:9.1f} s (peak {p:.1f} GB){'':16s}" for t, p in zip(totals, peaks)))
    print("last run's wall seconds: " + ", ".join(f"{w:.0f}" if w else "—" for _, _, w in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
