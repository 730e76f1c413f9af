"""The compile stage's compile of a main the search already compiled: compiled again (before commit 1c744bf) and taken
from the search's kept file (after).

    .venv/bin/python bench/kept_compile_bench.py DIR [--variant int16_w8] [--soc SM8750]

DIR is an artifact folder with the variant quantized. First the compile as the lab's compile stage ran it before: a
fresh compile of the variant's main. Then the search's way: the same bytes copied to a candidate's scratch name and
put through the search's own compile step (`search._compiles`: QNN rule check, compile, kept), then the compile
stage's call, which now takes the kept file. Prints the seconds of each, whether the compiled files are identical
byte for byte and the records equal (coverage, rejected ops, sizes); exits 1 if they differ. The time the search
spends is the same before and after (it compiled every candidate before too); what the stage saves is its compile.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from folder_args import folder_variant_args


def main() -> int:
    a = folder_variant_args(__doc__, tokens=False, soc="SM8750")

    from quantlab.analyze.search import _compiles
    from quantlab.compile.compiler import compile_model
    from quantlab.runtime.session import ArtifactSet

    main_path = ArtifactSet(a.dir, a.variant).path(a.variant)
    with tempfile.TemporaryDirectory(dir=a.dir, prefix=".bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        before = compile_model(main_path, a.soc, work / "before.tflite", reuse_kept=False)
        t_before = time.perf_counter() - t0
        shutil.copy(main_path, work / ".analyze-candidate-0.tflite")
        shutil.copy(main_path, work / main_path.name)
        t0 = time.perf_counter()
        _compiles(work / ".analyze-candidate-0.tflite", a.soc)
        t_search = time.perf_counter() - t0
        t0 = time.perf_counter()
        after = compile_model(work / main_path.name, a.soc, work / "after.tflite")
        t_after = time.perf_counter() - t0
        same_file = before.path.read_bytes() == after.path.read_bytes()
        rb, ra = before.record(), after.record()
        same_record = (rb.coverage, rb.rejected, rb.bytes, rb.dispatch_ops) == \
            (ra.coverage, ra.rejected, ra.bytes, ra.dispatch_ops)
    print(f"compile stage, {a.variant} for {a.soc} ({main_path.stat().st_size / 1e6:.1f} MB main, {a.dir}):")
    print(f"  compiled again (before):            {t_before:8.1f} s")
    print(f"  taken from the search's kept file:  {t_after:8.1f} s   ratio {t_before / t_after:.0f}x, "
          f"saves {t_before - t_after:.1f} s")
    print(f"  (the search's own check + compile of the candidate: {t_search:.1f} s, paid before and after)")
    cov = "; ".join(f"{s} {c['ops_offloaded']}/{c['ops_total']} in {c['partitions']}" for s, c in ra.coverage.items())
    print(f"  coverage: {cov}; compiled {ra.bytes / 1e6:.1f} MB; reused={ra.reused}")
    print(f"  identical compiled file: {same_file}; same record: {same_record}")
    return 0 if same_file and same_record and ra.reused else 1


if __name__ == "__main__":
    raise SystemExit(main())
