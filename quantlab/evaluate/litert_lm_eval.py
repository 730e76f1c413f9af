"""A variant's perplexity measured through Google's LiteRT-LM runtime, on its `.litertlm` bundle.

The evaluation text is cut into the same windows quantlab's own scoring uses (BOS, then up to cache_len - 1 tokens);
each window's text goes to LiteRT-LM's `run_text_scoring` after an empty prompt (LiteRT-LM prepends BOS itself),
which returns one log-probability per token of the window as LiteRT-LM tokenizes it. Those give the perplexity and
the per-position figures (token k of a window is position k). LiteRT-LM's API returns only the scored tokens'
log-probabilities, not whole distributions, so KL and top-1 against FP32 stay quantlab's runtime's measurements.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from quantlab import artifacts
from quantlab.errors import UserError
from quantlab.evaluate.metrics import Accumulator
from quantlab.evaluate.windows import windows
from quantlab.manifest import Metrics
from quantlab.runtime.litert_lm import LiteRTLMBundle
from quantlab.runtime.session import ArtifactSet


def evaluate_litert_lm(folder: Path, text: str, variant: str, max_tokens: int | None = None,
                       sample_prompt: str | None = None, sample_tokens: int = 32) -> Metrics:
    """Perplexity of `variant`'s bundle through LiteRT-LM (and a greedy sample of `sample_prompt`)."""
    arts = ArtifactSet(Path(folder), variant)
    key = artifacts.bundle_key(variant)
    if key not in arts.data.artifacts:
        raise UserError(f"{folder} has no bundle of {variant}; run `quantlab bundle {folder} --variant {variant}` first")
    ids = arts.encode(text)[1:]
    if max_tokens is not None:
        ids = ids[:max_tokens]
    wins = windows(ids, arts.model_info.bos_token_id, arts.host.cache_len)
    bundle = LiteRTLMBundle(arts.path(key), arts.host.cache_len)
    acc, scored, t0 = Accumulator(), 0, time.perf_counter()
    mismatched = 0
    try:
        for w in wins:
            lp = np.asarray(bundle.score("", arts.tokenizer.decode(w[1:])).token_scores, np.float64)
            mismatched += len(lp) != len(w) - 1
            acc.add_log_probs(lp, np.arange(len(lp)))
            scored += len(lp)
        seconds = time.perf_counter() - t0
        sample = ({"prompt": sample_prompt, "text": bundle.generate(sample_prompt, sample_tokens)}
                  if sample_prompt else None)
    finally:
        bundle.close()
    summary = acc.summary()
    return Metrics(variant=variant, model=arts.model_info.name, random_weights=arts.model_info.random_weights,
                   tokens_scored=summary["tokens_scored"], perplexity=summary["perplexity"], windows=len(wins),
                   window_tokens=arts.host.cache_len, reference=None, by_position=summary["by_position"],
                   speed={"runtime": "litert-lm", "scoring_tokens_per_s": scored / seconds if seconds else 0.0,
                          "windows_tokenized_differently": mismatched},
                   sample=sample)
