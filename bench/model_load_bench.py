"""Loading the bundled 270M: config, tokenizer and weights each read from the GGUF (quantlab before, the slow path)
against the cached config and tokenizer (bundled.load_bundled: the file parsed once, for its tensors).

    .venv/bin/python bench/model_load_bench.py [--repeat 2]

Each load runs in a fresh process (as the export step does), slow and fast path alternating; prints the seconds of
each and checks that both give the same token ids (calibration and evaluation texts), the same weights (a hash of the
state dict) and the same config (exit 1 if not).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import hashlib, json, sys, time
t0 = time.perf_counter()
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from quantlab.models import bundled
from quantlab.models.gguf_file import check_gguf, load_gguf
from quantlab.texts import default_calibration_texts, default_eval_text
t1 = time.perf_counter()
path = bundled.bundled_gguf_path()
if sys.argv[1] == "cached":
    loaded = bundled.load_bundled()
    model, tok = loaded.model, loaded.tokenizer
else:  # quantlab before: the header checked, then config, tokenizer and model each read from the file
    check_gguf(path)
    folder, fname = str(path.parent), path.name
    AutoConfig.from_pretrained(folder, gguf_file=fname)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
t2 = time.perf_counter()
ids = [tok(t).input_ids for t in [*default_calibration_texts()[:2], default_eval_text()]]
h = hashlib.sha256()
for k, v in sorted(model.state_dict().items()):
    h.update(k.encode()); h.update(v.detach().contiguous().numpy().tobytes())
cfg = {k: v for k, v in model.config.to_dict().items() if k not in ("transformers_version", "_name_or_path")}
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "ids": ids, "weights": h.hexdigest(), "config": cfg},
                 default=str))
"""


def run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    rows: dict[str, list[dict]] = {"gguf": [], "cached": []}  # slow path first, then fast, alternating
    for _ in range(a.repeat):
        for mode in rows:
            rows[mode].append(run(mode))
    print(f"{'path':10s} {'imports s':>10s} {'load s (each run)':>30s}")
    for mode, rs in rows.items():
        loads = ", ".join("%.1f" % r["load"] for r in rs)
        print(f"{mode:10s} {min(r['imports'] for r in rs):10.1f} {loads:>30s}")
    slow, fast = (min(r["load"] for r in rows[m]) for m in ("gguf", "cached"))
    print(f"load with the cached config and tokenizer: {fast:.1f} s against {slow:.1f} s (x{fast / slow:.2f})")
    same = {k: all(r[k] == rows["gguf"][0][k] for rs in rows.values() for r in rs) for k in ("ids", "weights", "config")}
    print(", ".join(f"{k}: {'the same' if ok else 'DIFFER'}" for k, ok in same.items()))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
