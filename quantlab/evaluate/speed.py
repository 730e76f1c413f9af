"""CPU speed of an artifact set through the host runtime, and the process's peak memory."""

from __future__ import annotations

import sys
import time

import numpy as np

from quantlab.procmon import peak_rss_mb
from quantlab.runtime.session import ArtifactSet


def measure_speed(arts: ArtifactSet, prompt_ids: list[int], decode_steps: int = 32) -> dict:
    """Prefill `prompt_ids`, then `decode_steps` greedy decode calls; tokens per second of each.

    Prefill speed counts the prompt's tokens over the time to the first new token's logits (all but the last token
    through prefill, padding included in the work, then the last through decode), so it is what a user sees for a
    prompt of that length. Choose a prompt of a whole number of chunks for peak throughput.
    Both are measured after one warm-up call of each signature.
    """
    decode_steps = max(1, min(decode_steps, arts.host.cache_len - len(prompt_ids)))
    # Warm-up: LiteRT's first call of each signature builds the XNNPACK delegate and packs the weights (seconds);
    # that is a load-time cost, not a per-token one.
    warm = arts.session()
    warm.decode(int(np.argmax(warm.prefill(prompt_ids))))
    sess = arts.session()
    t0 = time.perf_counter()
    logits = sess.prefill(prompt_ids)
    t1 = time.perf_counter()
    tok = int(np.argmax(logits))
    for _ in range(decode_steps):
        tok = int(np.argmax(sess.decode(tok)))
    t2 = time.perf_counter()
    return {
        "prefill_tokens": len(prompt_ids),
        "prefill_tokens_per_s": len(prompt_ids) / (t1 - t0),
        "decode_steps": decode_steps,
        "decode_tokens_per_s": decode_steps / (t2 - t1),
        "threads": arts.main.num_threads,
    }


def measure_speed_isolated(folder, variant: str, n_prompt: int, decode_steps: int,
                           num_threads: int | None = None) -> dict:
    """`measure_speed` in a fresh process, so its peak RSS is the runtime's own and not whatever the calling process
    (a lab that calibrated, a torch reference) already used."""
    import json
    import subprocess

    cmd = [sys.executable, "-m", "quantlab.evaluate.speed", str(folder), variant, str(n_prompt), str(decode_steps),
           str(num_threads or 0)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"speed probe failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _probe(argv: list[str]) -> None:
    import json
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    folder, variant, n_prompt, steps, threads = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    from quantlab.texts import default_eval_text

    arts = ArtifactSet(folder, variant, threads or None)
    ids = arts.encode(default_eval_text())[:n_prompt]
    res = measure_speed(arts, ids, steps)
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(res))


if __name__ == "__main__":
    _probe(sys.argv[1:])
