"""One variant's evaluation against FP32 with FP32's logits rerun (before 2026-12-02) and read from the folder's store.

    .venv/bin/python bench/reference_logits_bench.py DIR [--variant int16_w8] [--tokens 1279]

DIR is an artifact folder with the variant quantized. Runs `evaluate` of the variant against fp32 twice in this
process: first with FP32's logits computed by a fresh FP32 pass (the store moved aside, as every variant did before),
then read back from the store that FP32's own evaluation writes (made here first if the folder has none: its time
is printed apart, it is the pass the lab's `evaluate:fp32` step makes anyway). Prints each run's seconds, the metrics
side by side (they must be equal: same numbers, not just close) and the ratio. The lab pays the fresh pass once per
compared variant (four in the default run) before, once in all after.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from folder_args import folder_variant_args

KEYS = ("perplexity", "kl", "top1_agreement", "max_abs_logit_diff", "tokens_scored")


def main() -> int:
    a = folder_variant_args(__doc__)

    from quantlab.evaluate.evaluator import evaluate
    from quantlab.evaluate.stored_logits import STORE_DIR
    from quantlab.runtime.session import ArtifactSet
    from quantlab.texts import default_eval_text

    text = default_eval_text()
    n = a.tokens or ArtifactSet(a.dir).host.cache_len - 1
    store = a.dir / STORE_DIR

    def timed(variant: str, reference: str | None):
        t0 = time.perf_counter()
        res = evaluate(a.dir, text, variant, reference, n, decode_steps=2, quiet=True)
        return res, time.perf_counter() - t0

    with tempfile.TemporaryDirectory(dir=a.dir) as aside:
        if store.exists():
            shutil.move(store, Path(aside) / STORE_DIR)
        try:
            before, t_before = timed(a.variant, "fp32")
        finally:
            shutil.rmtree(store, ignore_errors=True)
            if (Path(aside) / STORE_DIR).exists():
                shutil.move(Path(aside) / STORE_DIR, store)
    if not any(store.glob("*.npy")):
        _, t_fp32 = timed("fp32", None)
        print(f"fp32's own evaluation, storing its logits: {t_fp32:.1f} s")
    after, t_after = timed(a.variant, "fp32")
    print(f"evaluate {a.variant} vs fp32 over {after.tokens_scored} positions ({a.dir}):")
    print(f"  {'':22s} {'FP32 rerun (before)':>22s} {'FP32 stored (after)':>22s}")
    print(f"  {'seconds':22s} {t_before:22.1f} {t_after:22.1f}   ratio {t_before / t_after:.2f}x")
    for k in KEYS:
        print(f"  {k:22s} {getattr(before, k)!s:>22s} {getattr(after, k)!s:>22s}")
    same = all(getattr(before, k) == getattr(after, k) for k in KEYS)
    print(f"  identical metrics: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
