"""`quantlab eval`: an artifact's perplexity on a text, its agreement with a reference, its speed and memory."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from quantlab.errors import UserError
from quantlab.manifest import Metrics
from quantlab.evaluate.metrics import Accumulator
from quantlab.evaluate.scorers import CachedScorer, LiteRTScorer, Scorer, StoredScorer, TorchScorer
from quantlab.evaluate.speed import measure_speed_isolated
from quantlab.procmon import peak_rss_mb
from quantlab.evaluate.windows import windows
from quantlab.progress import steps
from quantlab.runtime.session import ArtifactSet
from quantlab.runtime.scoring_main import scoring_main


# Up to this many tokens, the reference's logits are computed first (or read from the folder's stored logits, where
# a variant of the same folder is the reference and FP32's own evaluation stores them) and its models let go before
# the variant loads (1 MB per token; the lab's 1,279 tokens take 1.3 GB, against 13 GB for the 1B's FP32 main).
# Longer texts stream both and store nothing.
DETACH_REFERENCE_TOKENS = 2048

# Bumped whenever what `evaluate` measures, or how, changes; the lab re-evaluates results made by an older method.
# 2: speed and runtime RSS measured in a fresh process (VmHWM). 3: "all threads" is every core (it was LiteRT's
# default, one thread).
METHOD_VERSION = 3


def make_reference(reference: str | None, arts: ArtifactSet) -> Scorer | None:
    """`torch`: the PyTorch model the folder was exported from; a variant name in the same folder; or another
    artifact folder (its fp32 main). Choose `torch` to measure export fidelity, `fp32` to measure quantization cost.
    A variant of the same folder is read from the folder's stored logits when an earlier evaluation wrote them."""
    if reference is None:
        return None
    if reference == "torch":
        from quantlab.models import load_model

        return TorchScorer(load_model(arts.model_info.spec).model, arts.host.prefill_len)
    mains = arts.data.mains()
    if reference in mains:
        return LiteRTScorer(ArtifactSet(arts.folder, reference, arts.num_threads))
    if Path(reference).is_dir():
        return LiteRTScorer(ArtifactSet(Path(reference), "fp32", arts.num_threads))
    raise UserError(
        f"reference {reference!r} is not 'torch', a variant in {arts.folder} ({', '.join(mains)}), or an artifact folder"
    )


def score(test: Scorer, ref: Scorer | None, wins: list[list[int]], quiet: bool = False) -> tuple[dict, float]:
    """Stream both scorers over the windows; returns the metrics summary and the seconds spent in `test`."""
    acc = Accumulator()
    test_s = 0.0
    for w in steps(wins, desc=f"scoring {test.name}", quiet=quiet):
        ref_iter = ref.chunks(w) if ref is not None else None
        pos = 0
        it = test.chunks(w)
        while True:
            t0 = time.perf_counter()
            chunk = next(it, None)
            test_s += time.perf_counter() - t0
            if chunk is None:
                break
            n = len(chunk)
            ref_chunk = next(ref_iter) if ref_iter is not None else None
            # Row i predicts token pos+i+1; the window's last token predicts nothing.
            keep = min(n, len(w) - 1 - pos)
            if keep > 0:
                targets = np.asarray(w[pos + 1 : pos + 1 + keep])
                positions = np.arange(pos, pos + keep)
                acc.add(chunk[:keep], targets, positions, None if ref_chunk is None else ref_chunk[:keep])
            pos += n
    return acc.summary(), test_s


def evaluate(folder: Path, text: str, variant: str = "fp32", reference: str | None = None,
             max_tokens: int | None = None, decode_steps: int = 32, num_threads: int | None = None,
             quiet: bool = False, speed: bool = True) -> Metrics:
    """Measure one variant: perplexity on `text` (windows of the cache length, BOS first), KL / top-1 / worst logit
    difference against `reference` (see make_reference), CPU speed and memory. `max_tokens` caps the text.
    `speed=False` leaves the speed run out (the lab runs it as a step of its own, alone on the machine, so that a
    figure is never taken while another step shares the cores)."""
    arts = ArtifactSet(Path(folder), variant, num_threads)
    ids = arts.encode(text)[1:]
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if len(ids) < 2:
        raise UserError("the evaluation text has fewer than 2 tokens; pass a longer text")
    bos = arts.model_info.bos_token_id
    speed_run = (measure_speed_isolated(folder, variant, arts.host.prefill_len, decode_steps, num_threads)
                 if speed else {})
    rss_runtime = speed_run.pop("peak_rss_mb", None)
    wins = windows(ids, bos, arts.host.cache_len)
    n_tokens = sum(len(w) for w in wins)
    ref = make_reference(reference, arts)
    detach = n_tokens <= DETACH_REFERENCE_TOKENS
    if ref is not None and detach:
        same_folder = isinstance(ref, LiteRTScorer) and ref.arts.folder == arts.folder
        ref = (StoredScorer(ref.arts) if same_folder else CachedScorer(ref)).detach(wins)
    # Scored through the main's scoring copy (runtime/scoring_main.py: 4-bit tables stored as int8, a 16-bit main's
    # LM head on the host): the same logits, faster. The speed figures above are the artifact's own;
    # scoring_tokens_per_s is the copy's.
    with tempfile.TemporaryDirectory(prefix=".scoring-", dir=folder) as tmp:
        scoring = scoring_main(arts.path(variant), Path(tmp) / "scoring.tflite", arts.num_threads)
        arts.main = scoring.model
        # FP32's own pass stores its logits: the variants compared with it afterwards read them instead of rerunning.
        test = (StoredScorer(arts, reuse=False) if variant == "fp32" and detach
                else LiteRTScorer(arts, scoring.head))
        metrics, test_s = score(test, ref, wins, quiet)
        del test, scoring, arts.main
    return Metrics(
        variant=variant, model=arts.model_info.name, random_weights=arts.model_info.random_weights,
        reference=reference, windows=len(wins), window_tokens=arts.host.cache_len, **metrics,
        speed={**speed_run, "scoring_tokens_per_s": n_tokens / test_s if test_s else 0.0},
        peak_rss_mb_runtime=None if rss_runtime is None else round(rss_runtime, 1), peak_rss_mb=round(peak_rss_mb(), 1))


def speed_of(folder: Path, variant: str, decode_steps: int = 32, num_threads: int | None = None) -> dict:
    """CPU speed and the runtime's peak RSS (`peak_rss_mb`), in a fresh process on one prefill chunk of the default
    English text (BOS + prefill_len - 1 tokens), then decode steps: comparable across variants and runs."""
    arts = ArtifactSet(Path(folder), variant, num_threads)
    return measure_speed_isolated(folder, variant, arts.host.prefill_len, decode_steps, num_threads)
