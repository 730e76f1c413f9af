"""A 4-bit main scored as it is and through its int8-stored copy (runtime/widen_int4.py), side by side.

    .venv/bin/python bench/widen_int4_bench.py DIR [--variant int16_w4] [--tokens 256]

DIR is an artifact folder with a 4-bit main (`quantlab quantize DIR --scheme int16_w4`). Decodes the first `tokens`
tokens of the default evaluation text through both files, one after the other in this process (every core), and
prints the seconds of making the copy, each file's decode rate, the ratio, and whether every logit is the same bit for
bit (the copy is only worth having if it is).
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
    ap.add_argument("--variant", default="int16_w4")
    ap.add_argument("--tokens", type=int, default=256)
    a = ap.parse_args()

    from quantlab.runtime.litert_model import LiteRTModel
    from quantlab.runtime.session import ArtifactSet
    from quantlab.runtime.widen_int4 import scoring_copy
    from quantlab.texts import default_eval_text

    arts = ArtifactSet(a.dir, a.variant)
    src = arts.path(a.variant)
    ids = arts.encode(default_eval_text())[: a.tokens]
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        t0 = time.perf_counter()
        wide_path = scoring_copy(src, Path(tmp) / "scoring.tflite")
        t_copy = time.perf_counter() - t0
        if wide_path == src:
            print(f"{src.name} has no per-channel 4-bit constant tensor: nothing to widen")
            return 1
        wide = copy.copy(arts)
        wide.main = LiteRTModel(wide_path, arts.num_threads)
        out, secs = {}, {}
        for name, a_set in (("4-bit file", arts), ("int8-stored copy", wide)):
            _ = a_set.main, a_set.embedder  # loaded before timing
            t0 = time.perf_counter()
            out[name] = np.concatenate(list(a_set.session().decode_chunks(ids, arts.host.prefill_len)))
            secs[name] = time.perf_counter() - t0
        size = (src.stat().st_size / 1e6, wide_path.stat().st_size / 1e6)
    (n1, t1), (n2, t2) = secs.items()
    print(f"{a.variant} ({a.dir}), {len(ids)} tokens through decode:")
    print(f"  copy made in {t_copy:.1f} s ({size[0]:.1f} MB -> {size[1]:.1f} MB)")
    print(f"  {n1:18s} {len(ids) / t1:6.2f} tok/s  ({t1:.1f} s)")
    print(f"  {n2:18s} {len(ids) / t2:6.2f} tok/s  ({t2:.1f} s)   {t1 / t2:.2f}x")
    same = np.array_equal(*out.values())
    print(f"  identical logits: {same} (largest |difference| {np.abs(out[n1] - out[n2]).max():.3g})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
