"""CPU speed of quantlab's mains against litert-torch's own generative Gemma3 example with dynamic int8 weights.

    .venv/bin/python bench/cpu_speed_bench.py [--lab out] [--threads 2] [--decode-steps 32] [--keep DIR]

`--lab` is a lab folder of the bundled Gemma3-270M (`./quantlab.sh run` makes `out/`); its `dynamic_int8` variant is
made with `quantlab quantize` if missing. The peer is `litert_torch.generative.examples.gemma3` (build_model_270m,
loaded from the same Hugging Face state dict quantlab exports from) converted by `converter.convert_to_tflite` with
`quantize="dynamic_int8"`, prefill 128, KV cache 1280, mask as input and transposed KV cache (the example's own
defaults). Same weights, same prompt (BOS + the first 127 tokens of the default English evaluation text), same thread
count; every model is timed in a fresh process, one after another, after one warm-up call of each signature.

How each runs from Python: quantlab's main returns only the new K/V slices, which the host writes into its caches; the
peer takes the whole caches and mask as inputs and returns the whole updated caches, which the host feeds back (as
its LiteRT signature asks). Both figures include that host work. The peer's greedy continuation is checked against
quantlab's FP32 one, so that both are known to hold the same weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from rss import run_measured  # noqa: E402

PREFILL, CACHE = 128, 1280
CHECK_TOKENS = 8


def export_peer(out_dir: Path) -> Path:
    """litert-torch's Gemma3-270M example, loaded from the bundled weights, as dynamic int8."""
    import tf_shim

    tf_shim.install()
    from litert_torch.generative.examples.gemma3 import decoder
    from litert_torch.generative.layers import kv_cache as kv_utils
    from litert_torch.generative.utilities import converter
    from litert_torch.generative.utilities.export_config import ExportConfig

    from quantlab.models import load_model

    state = load_model("gemma3-270m").model.state_dict()
    model = decoder.build_model_270m("bundled-gguf", custom_loader=lambda _path: state)
    model.eval()
    cfg = ExportConfig(mask_as_input=True, kvcache_layout=kv_utils.KV_LAYOUT_TRANSPOSED)
    return Path(converter.convert_to_tflite(model, str(out_dir), "gemma3_270m", PREFILL, CACHE,
                                            quantize="dynamic_int8", export_config=cfg))


def peer_speed(path: Path, ids: list[int], steps: int, threads: int) -> dict:
    """Prefill `ids` (one chunk), then greedy decode `steps` tokens, feeding the whole caches back each call."""
    import tf_shim

    tf_shim.install()
    from ai_edge_litert.interpreter import Interpreter
    from litert_torch.generative.examples.gemma3 import decoder

    from quantlab.procmon import peak_rss_mb

    mask_value = np.float32(decoder.get_decoder_config_270m().causal_mask_value)
    interp = Interpreter(model_path=str(path), num_threads=threads)
    sigs = list(interp.get_signature_list())
    prefill_sig = next(s for s in sigs if s.startswith("prefill"))
    prefill, decode = interp.get_signature_runner(prefill_sig), interp.get_signature_runner("decode")
    cache_names = [n for n in prefill.get_input_details() if n.startswith("kv_cache")]

    def mask(positions: np.ndarray) -> np.ndarray:
        m = np.where(np.arange(CACHE)[None, :] <= positions[:, None], np.float32(0), mask_value)
        return m[None, None].astype(np.float32)

    def run(ids_: list[int]) -> tuple[list[int], float, float]:
        caches = {n: np.zeros(d["shape"], d["dtype"]) for n, d in prefill.get_input_details().items() if n in cache_names}
        # Prefill has no logits output: prefill all but the last prompt token (padded to the chunk), decode the last.
        n = len(ids_)
        toks = np.zeros((1, PREFILL), np.int32)
        toks[0, : n - 1] = ids_[:-1]
        pos = np.arange(PREFILL, dtype=np.int32)
        t0 = time.perf_counter()
        out = prefill(tokens=toks, input_pos=pos, mask=mask(pos), **caches)
        caches = {n_: out[n_] for n_ in cache_names}
        t1 = time.perf_counter()
        tok, p, gen = ids_[-1], n - 1, []
        for _ in range(steps):
            out = decode(tokens=np.array([[tok]], np.int32), input_pos=np.array([p], np.int32),
                         mask=mask(np.array([p])), **caches)
            caches = {n_: out[n_] for n_ in cache_names}
            tok, p = int(np.argmax(out["logits"][0, -1])), p + 1
            gen.append(tok)
        return gen, t1 - t0, time.perf_counter() - t1

    run(ids)  # warm-up: XNNPACK packs weights on the first call of each signature
    gen, pre_s, dec_s = run(ids)
    return {"prefill_tokens_per_s": len(ids) / pre_s, "decode_tokens_per_s": steps / dec_s, "greedy": gen,
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def quantlab_greedy(lab: Path, ids: list[int], n: int) -> list[int]:
    from quantlab.runtime.session import ArtifactSet

    sess = ArtifactSet(lab, "fp32").session()
    logits, out = sess.prefill(ids), []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = sess.decode(out[-1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lab", type=Path, default=Path("out"), help="lab folder of the bundled 270M (default out/)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--keep", type=Path, default=None, help="keep the peer's .tflite under this folder")
    a = ap.parse_args()

    from quantlab import manifest
    from quantlab.texts import default_eval_text
    from quantlab.evaluate.speed import measure_speed_isolated
    from quantlab.runtime.session import ArtifactSet

    data = manifest.load(a.lab)
    if data.model.random_weights or data.model.name != "gemma3-270m":
        print(f"{a.lab} is not a lab folder of the bundled gemma3-270m; run ./quantlab.sh run first")
        return 2
    exe = str(Path(sys.executable).with_name("quantlab"))
    if "dynamic_int8" not in data.artifacts:
        subprocess.run([exe, "quantize", str(a.lab), "--scheme", "dynamic_int8"], check=True, capture_output=True)
        data = manifest.load(a.lab)
    ids = ArtifactSet(a.lab).encode(default_eval_text())[:PREFILL]

    root = a.keep or Path(tempfile.mkdtemp(prefix="qlpeer-"))
    root.mkdir(parents=True, exist_ok=True)
    rc, export_s, export_gb, tail = run_measured([sys.executable, __file__, "_export", str(root)])
    if rc != 0:
        print(f"peer export failed (exit {rc})\n{tail}")
        return 1
    peer_path = Path(tail.strip().splitlines()[-1])
    rc, _, _, out = run_measured([sys.executable, __file__, "_speed", str(peer_path), json.dumps(ids),
                                  str(a.decode_steps), str(a.threads)])
    if rc != 0:
        print(f"peer speed run failed (exit {rc})\n{out}")
        return 1
    peer = json.loads(out.strip().splitlines()[-1])
    ours = {}
    for v in ("fp32", "int8", "int16_w8", "dynamic_int8"):
        if v in data.artifacts:
            ours[v] = measure_speed_isolated(a.lab, v, PREFILL, a.decode_steps, a.threads)
    mine = quantlab_greedy(a.lab, ids, CHECK_TOKENS)
    same = sum(x == y for x, y in zip(mine, peer["greedy"][:CHECK_TOKENS]))

    print(f"\nGemma3-270M (real weights), prompt {len(ids)} tokens, {a.decode_steps} decode steps, "
          f"{a.threads} threads, LiteRT CPU (XNNPACK)")
    print(f"peer export (litert-torch example, dynamic_int8): {export_s:.0f} s, peak RSS {export_gb:.1f} GB; "
          f"greedy tokens equal to quantlab fp32: {same}/{CHECK_TOKENS}")
    head = f"{'model':34s} {'MB':>7s} {'prefill tok/s':>14s} {'decode tok/s':>13s} {'prefill ×':>10s} {'decode ×':>9s}"
    print(head)
    pp, pd = peer["prefill_tokens_per_s"], peer["decode_tokens_per_s"]
    print(f"{'litert-torch example dynamic_int8':34s} {peer_path.stat().st_size / 1e6:7.1f} {pp:14.1f} {pd:13.1f} "
          f"{1.0:10.2f} {1.0:9.2f}")
    for v, s in ours.items():
        mb = (a.lab / data.artifacts[v].path).stat().st_size / 1e6
        print(f"{'quantlab ' + v:34s} {mb:7.1f} {s['prefill_tokens_per_s']:14.1f} {s['decode_tokens_per_s']:13.1f} "
              f"{s['prefill_tokens_per_s'] / pp:10.2f} {s['decode_tokens_per_s'] / pd:9.2f}")
    print("(× = ratio to the litert-torch example measured in this run; quantlab's figures include its embedder call "
          "and host cache writes, the peer's its whole-cache copies)")
    if a.keep is None:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_export":
        print(export_peer(Path(sys.argv[2])))
    elif len(sys.argv) > 1 and sys.argv[1] == "_speed":
        print(json.dumps(peer_speed(Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
    else:
        sys.exit(main())
