"""Two steps side by side on this machine's cores: what each layout of threads and cores does to scoring speed.

    .venv/bin/python bench/side_by_side_bench.py DIR [--variant int16_w8] [--tokens 128]

DIR: an artifact folder holding the variant (e.g. `quantlab export --out DIR && quantlab calibrate DIR && quantlab
quantize DIR --scheme int16_w8`). Scores `--tokens` positions of the default evaluation text through quantlab's
runtime (decode at every position, as the lab does) in fresh processes, and prints tokens/s and cores used for:
one scoring alone with a thread per core; alone with one thread; two side by side, each pinned to a core of its own
with one thread (what the lab's scheduler does); two side by side with a thread per core each, unpinned (what two
steps would do without it); and one scoring beside a process that keeps one core busy (the search's compile), with a
thread per core and with one thread. Nothing else should run meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from folder_args import folder_variant_args  # noqa: E402


def worker(folder: str, variant: str, tokens: int, threads: int, cpu: int) -> None:
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    from quantlab.evaluate.scorers import LiteRTScorer
    from quantlab.runtime.session import ArtifactSet
    from quantlab.texts import default_eval_text

    arts = ArtifactSet(Path(folder), variant, threads or None)
    ids = arts.encode(default_eval_text())[:tokens]
    arts.session()
    t0, c0 = time.perf_counter(), os.times()
    for _ in LiteRTScorer(arts).chunks(ids):
        pass
    wall, c1 = time.perf_counter() - t0, os.times()
    cpu_s = c1.user - c0.user + c1.system - c0.system
    print(json.dumps({"tok_s": tokens / wall, "cores_used": cpu_s / wall, "threads": arts.main.num_threads}))


def start(a, threads: int, cpu: int = -1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", str(a.dir), a.variant, str(a.tokens), str(threads),
                             str(cpu)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def result(p: subprocess.Popen) -> dict:
    out, _ = p.communicate()
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    a = folder_variant_args(__doc__)
    a.tokens = a.tokens or 128
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        print("needs at least 2 cores")
        return 2
    rows = []
    rows.append(("alone, a thread per core", [result(start(a, cores))]))
    rows.append(("alone, 1 thread", [result(start(a, 1))]))
    pair = [start(a, 1, 0), start(a, 1, 1)]
    rows.append(("two side by side, pinned, 1 thread each", [result(p) for p in pair]))
    pair = [start(a, cores), start(a, cores)]
    rows.append(("two side by side, unpinned, a thread per core each", [result(p) for p in pair]))
    for threads, label in ((cores, "a thread per core"), (1, "1 thread")):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            rows.append((f"beside a busy core, {label}", [result(start(a, threads))]))
        finally:
            busy.kill()
            busy.wait()
    base = rows[0][1][0]["tok_s"]
    print(f"{a.variant}, {a.tokens} positions, {cores} cores")
    print(f"{'layout':52s} {'tok/s each':>18s} {'all together':>13s} {'× alone':>8s} {'cores used':>11s}")
    for label, res in rows:
        each = " + ".join(f"{r['tok_s']:.2f}" for r in res)
        total = sum(r["tok_s"] for r in res)
        used = " + ".join(f"{r['cores_used']:.2f}" for r in res)
        print(f"{label:52s} {each:>18s} {total:13.2f} {total / base:8.2f} {used:>11s}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
        sys.exit(0)
    sys.exit(main())
