"""The embedder rewrite a bundle needs, the slow way and the fast way side by side, and one whole bundle.

    .venv/bin/python bench/bundle_bench.py DIR [--variant int16_w8]

DIR is an artifact folder with the variant quantized (`quantlab export`, `calibrate`, `quantize --scheme int16_w8`).
Prints the seconds of `bundle_embedder` (the int8 embedder with a QUANTIZE to main's input scale appended) with the
table handed to flatbuffers as a numpy array (what quantlab does) and as bytes (what `read_model` gives: one Python
call per byte, the code before 2026-12-02), whether the two files are byte for byte the same, and the seconds of a
whole `quantlab bundle` of the variant. On the 270M the slow path takes about two minutes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


class _BytesAsIs:
    """Stands in for numpy inside quantlab.tflite_file so that no buffer is converted (the old code path)."""

    ndarray = object
    frombuffer = staticmethod(np.frombuffer)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--variant", default="int16_w8")
    a = ap.parse_args()

    import quantlab.tflite_file as file_mod
    from quantlab.bundle.embedder import bundle_embedder
    from quantlab import layout
    from quantlab.bundle.aux import TensorType
    from quantlab.bundle.builder import build_bundle, signature_io
    from quantlab.runtime.session import ArtifactSet

    arts = ArtifactSet(a.dir, a.variant)
    dec, _ = signature_io(arts.path(a.variant))[layout.DECODE]
    e = TensorType.of(dec[layout.EMBEDDINGS])
    src = arts.path(arts.embedder_key)
    with tempfile.TemporaryDirectory() as tmp:
        seconds, files = {}, {}
        for how, np_module in (("numpy array (quantlab)", np), ("bytes (before)", _BytesAsIs)):
            file_mod.np = np_module
            dst = Path(tmp) / f"{len(files)}.tflite"
            t0 = time.perf_counter()
            bundle_embedder(src, dst, e.dtype, e.scale, e.zero_point)
            seconds[how], files[how] = time.perf_counter() - t0, dst.read_bytes()
        file_mod.np = np
    (fast, t_fast), (slow, t_slow) = seconds.items()
    print(f"embedder rewrite ({src.name}, {src.stat().st_size / 1e6:.1f} MB -> {e.dtype} embeddings):")
    print(f"  table as {fast}: {t_fast:.2f} s")
    print(f"  table as {slow}: {t_slow:.2f} s  ({t_slow / t_fast:.0f}x)")
    print(f"  same bytes: {files[fast] == files[slow]} ({len(files[fast]):,} and {len(files[slow]):,} bytes)")
    t0 = time.perf_counter()
    rec = build_bundle(a.dir, a.variant, overwrite=True)
    print(f"quantlab bundle {a.variant}: {time.perf_counter() - t0:.1f} s, {rec.bytes / 1e6:.1f} MB "
          "(the aux model is built once per folder and I/O types, then reused)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
