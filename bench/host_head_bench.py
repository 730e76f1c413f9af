"""A 16-bit main scored as it is and through its scoring copy: the LM head on the host (runtime/int_head.py).

    .venv/bin/python bench/host_head_bench.py DIR [--variant int16_w8] [--tokens 1279] [--threads 1]

DIR is an artifact folder with a 16-bit main. Decodes the first `tokens` tokens of the default evaluation text
(the lab's evaluation: one cache window) through the main as it is and through its scoring copy
(runtime/scoring_main.py: the head on the host, a 4-bit table stored as int8), chunk by chunk in lockstep in this
process, so that both see the same machine load; prints the seconds of making the copy, each path's rate, the ratio,
and whether every logit is the same bit for bit (the copy is only worth having if it is). `--threads 1` as in the
lab, where each scoring step has one core.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--variant", default="int16_w8")
    ap.add_argument("--tokens", type=int, default=1279)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    from quantlab.runtime.scoring_main import scoring_main
    from quantlab.runtime.session import ArtifactSet
    from quantlab.texts import default_eval_text

    arts = ArtifactSet(a.dir, a.variant, a.threads)
    ids = arts.encode(default_eval_text())[: a.tokens]
    rows = arts.host.prefill_len
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        t0 = time.perf_counter()
        scoring = scoring_main(arts.path(a.variant), Path(tmp) / "scoring.tflite", a.threads)
        t_copy = time.perf_counter() - t0
        if scoring.head is None:
            print(f"{a.variant}: decode does not end in an int16 x int8 LM head: nothing to take out")
            return 1
        split = copy.copy(arts)
        split.main = scoring.model
        _ = arts.main, arts.embedder  # loaded before timing
        paths = {"main as it is": arts.session().decode_chunks(ids, rows),
                 "scoring copy": split.session().decode_chunks(ids, rows, scoring.head)}
        secs = dict.fromkeys(paths, 0.0)
        same, worst = True, 0.0
        while True:
            chunks = {}
            for name, gen in paths.items():
                t0 = time.perf_counter()
                chunks[name] = next(gen, None)
                secs[name] += time.perf_counter() - t0
            if any(c is None for c in chunks.values()):
                break
            c1, c2 = chunks.values()
            same &= bool(np.array_equal(c1, c2))
            worst = max(worst, float(np.abs(c1 - c2).max()))
    (n1, t1), (n2, t2) = secs.items()
    print(f"{a.variant} ({a.dir}), {len(ids)} tokens through decode, {a.threads} thread(s):")
    print(f"  scoring copy made in {t_copy:.1f} s")
    print(f"  {n1:17s} {len(ids) / t1:6.2f} tok/s  ({t1:.1f} s)")
    print(f"  {n2:17s} {len(ids) / t2:6.2f} tok/s  ({t2:.1f} s)   {t1 / t2:.2f}x")
    print(f"  identical logits: {same} (largest |difference| {worst:.3g})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
