"""The metrics of one variant against FP32 computed with numpy's float64 log-softmax (before commit 1c744bf) and with
torch's (after), on the same logits.

    .venv/bin/python bench/metrics_bench.py DIR [--variant int16_w8] [--tokens 1279]

DIR is an artifact folder with `fp32` and the variant. The variant's and FP32's logits are computed once here (the
runtime, 1 MB per token each, held in memory), then fed to the old accumulator (its numpy code, copied below) and to
`quantlab.evaluate.metrics.Accumulator`. Prints each side's seconds, the metrics side by side and their largest
difference; exits 1 if any metric differs by more than 1e-9 relative.
"""

from __future__ import annotations

import time

import numpy as np
from folder_args import folder_variant_args

KEYS = ("perplexity", "kl", "top1_agreement", "max_abs_logit_diff", "tokens_scored")


def numpy_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


class NumpyAccumulator:
    """The accumulator's `add` as it was before commit 1c744bf (summary() is shared)."""

    def __init__(self) -> None:
        from quantlab.evaluate.metrics import Accumulator

        self.acc = Accumulator()

    def add(self, logits, targets, positions, ref) -> None:
        a = self.acc
        lp = numpy_log_softmax(logits)
        a.nll.extend((-lp[np.arange(len(targets)), targets]).tolist())
        a.positions.extend(positions.tolist())
        lr = numpy_log_softmax(ref)
        a.kl.extend((np.exp(lr) * (lr - lp)).sum(-1).tolist())
        a.agree.extend((logits.argmax(-1) == ref.argmax(-1)).tolist())
        a.max_abs_logit_diff = max(a.max_abs_logit_diff, float(np.abs(logits - ref).max()))


def main() -> int:
    a = folder_variant_args(__doc__)

    from quantlab.evaluate.metrics import Accumulator
    from quantlab.evaluate.scorers import LiteRTScorer
    from quantlab.evaluate.windows import windows
    from quantlab.runtime.session import ArtifactSet
    from quantlab.texts import default_eval_text

    arts = ArtifactSet(a.dir, a.variant)
    n = a.tokens or arts.host.cache_len - 1
    ids = arts.encode(default_eval_text())[1:][:n]
    wins = windows(ids, arts.model_info.bos_token_id, arts.host.cache_len)
    t0 = time.perf_counter()
    feeds = []  # (logits, targets, positions, ref) exactly as evaluator.score passes them
    for w in wins:
        pos = 0
        ref = list(LiteRTScorer(ArtifactSet(a.dir, "fp32")).chunks(w))
        for chunk, rchunk in zip(LiteRTScorer(arts).chunks(w), ref):
            keep = min(len(chunk), len(w) - 1 - pos)
            if keep > 0:
                feeds.append((chunk[:keep], np.asarray(w[pos + 1: pos + 1 + keep]), np.arange(pos, pos + keep),
                              rchunk[:keep]))
            pos += len(chunk)
    print(f"logits of {a.variant} and fp32 over {sum(len(f[1]) for f in feeds)} positions: "
          f"{time.perf_counter() - t0:.1f} s (not part of the comparison)")

    out, secs = {}, {}
    for name, acc in (("numpy (before)", NumpyAccumulator()), ("torch (after)", Accumulator())):
        t0 = time.perf_counter()
        for f in feeds:
            acc.add(*f)
        secs[name] = time.perf_counter() - t0
        out[name] = (acc.acc if isinstance(acc, NumpyAccumulator) else acc).summary()
    before, after = out.values()
    t_before, t_after = secs.values()
    print(f"metrics of {a.variant} vs fp32 ({a.dir}), {len(feeds)} chunks:")
    print(f"  {'':22s} {'numpy (before)':>22s} {'torch (after)':>22s}")
    print(f"  {'seconds':22s} {t_before:22.2f} {t_after:22.2f}   ratio {t_before / t_after:.2f}x")
    worst = 0.0
    for k in KEYS:
        print(f"  {k:22s} {before[k]!s:>22s} {after[k]!s:>22s}")
        worst = max(worst, abs(before[k] - after[k]) / max(abs(before[k]), 1e-30))
    print(f"  largest relative difference: {worst:.3g} (limit 1e-9)")
    return 0 if worst <= 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
