"""quantlab against Google's own NPU pipeline (litert-torch's `npu_export`), on the same Gemma3-270M weights.

    .venv/bin/python bench/google_npu_bench.py [--work DIR] [--soc SM8750] [--tokens 1279] [--rescore | --reuse-google]

Runs, one after the other, each step in a fresh process with its process tree's RSS sampled every 0.2 s:

1. Google: a Hugging Face folder saved from the bundled GGUF → `npu_export` (export) → `npu_calibrate` (its 50
   bundled prompts, 32 greedy decode steps each, profiler capture, min/max) → `npu_quantize` (A16W8, shared K/V
   scales) → `npu_compile` (Qualcomm, weight sharing). Its generative tools need one TensorFlow import, given by
   `tf_shim.py`; the QNN host libraries are quantlab's (onnxruntime-qnn + the libQnnLpai stand-in).
2. quantlab: `quantlab export`, `calibrate`, `quantize --scheme int16_w8` (its recommended NPU variant, A16W8 like
   Google's), `compile --soc SOC`: the same four steps.

Then both quantized models (before compilation; LiteRT's CPU kernels run them) score the same evaluation text (the
first `--tokens` tokens of quantlab's held-out English text, BOS first, one window of the 1,280-token cache) against the
same FP32 reference: the PyTorch model both were exported from. Google's model runs through its own executor
(`calib/sampling_executor.py`: its embedder, RoPE, mask and cache-update models, quantized as it ships them), one
decode step per token after a 1-token prefill so every position is scored; quantlab's through its host runtime, also
one decode step per token (its prefill returns no logits either).
Printed: perplexity / KL / top-1 overall and per 128-position bucket, NPU coverage (ops the QNN plugin took, per
signature, and partitions), file sizes, pipeline time and peak RSS, with ratios (quantlab / Google).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from rss import run_measured  # noqa: E402

PREFILL, CACHE = 128, 1280
BUCKET = 128


# ---------------------------------------------------------------- Google's pipeline (child process)
def google_pipeline(work: Path, soc: str) -> dict:
    import tf_shim

    tf_shim.install()
    from litert_torch.generative.export_hf.experimental import npu_export as npu_pkg
    from litert_torch.generative.export_hf.experimental.npu_export import config_manager, stages

    from quantlab.models import load_model
    from quantlab.models.bundled import bundled_tokenizer

    times = {}
    t0 = time.perf_counter()
    hf = work / "hf"
    model = load_model("gemma3-270m").model
    # The weights were dequantized to float32 on load; transformers still marks the model as GGUF-quantized and
    # refuses to save it. Unmark it: what is saved is the same float32 state dict quantlab exports from.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(hf)
    bundled_tokenizer().save_pretrained(hf)
    times["hf_folder"] = time.perf_counter() - t0
    cfg = config_manager.build_pipeline_config(str(hf), "qualcomm", soc, prefill_lengths=[PREFILL],
                                               cache_length=CACHE)
    t = time.perf_counter()
    exported = stages.npu_export(cfg, str(work / "export"))
    times["export"] = time.perf_counter() - t
    t = time.perf_counter()
    stages.npu_calibrate(cfg, exported, calibration_dataset_dir=str(Path(npu_pkg.__file__).parent),
                         calibration_result_save_dir=str(work / "calib"), calibration_dataset_format="json",
                         calibration_eval_task_names=["sample_calibration_prompts"])
    times["calibrate"] = time.perf_counter() - t
    t = time.perf_counter()
    quantized = str(work / "a16w8.litertlm")
    stages.npu_quantize(cfg, exported, quantized, str(work / "calib"))
    times["quantize"] = time.perf_counter() - t
    t = time.perf_counter()
    compiled = str(work / f"a16w8_{soc.lower()}.litertlm")
    stages.npu_compile(cfg, quantized, compiled)
    times["compile"] = time.perf_counter() - t
    return {"times": times, "quantized": quantized, "compiled": compiled, "hf": str(hf)}


# ---------------------------------------------------------------- scoring (child process)
class GoogleScorer:
    """Next-token logits of Google's quantized bundle, from its own executor, one decode step per token."""

    name = "google_a16w8"

    def __init__(self, litertlm: str, hf: str) -> None:
        import tf_shim

        tf_shim.install()
        from litert_torch.generative.export_hf.experimental.calib import loader
        from litert_torch.generative.export_hf.experimental.calib import sampling_executor as se

        self.se = se
        cfg = loader.load_models(model_path=(None, None), embedder_model_path=None, spm_path=None,
                                 transformers_model_path=hf, max_kv_cache_size=CACHE, input_litertlm=litertlm,
                                 enable_calibration=False)
        self.ex = se.Executor(cfg, stream_output=False)

    def chunks(self, window: list[int]):
        import dataclasses

        se, ex = self.se, self.ex
        state = se.DecodeState(kv_cache=ex.init_cache(), num_input_tokens=1, token_ids=np.asarray([window[:1]], np.int32),
                               sampled_tokens=np.asarray([[]], np.int32), logits=None,
                               time_step=np.asarray(0, np.int32), generate=False, done=False,
                               next_decode_token=np.asarray([[]], np.int32))
        state = ex.prefill_embeds(state)
        while not state.generate:
            state = ex.prefill_chunk(state)
        rows = []
        for i in range(1, len(window)):
            state = ex.decode_step(state, np.asarray([[window[i]]], np.int32))
            rows.append(np.asarray(state.logits[0, -1], np.float32))
            state = dataclasses.replace(state, logits=None, done=False)
            if len(rows) == PREFILL:  # chunks line up with the reference's
                yield np.stack(rows)
                rows = []
        if rows:  # (the window's last token predicts nothing, so it has no row)
            yield np.stack(rows)


def score_both(lab: Path, google: dict | None, tokens: int) -> dict:
    from quantlab.texts import default_eval_text
    from quantlab.evaluate.evaluator import score
    from quantlab.evaluate.scorers import CachedScorer, LiteRTScorer, TorchScorer
    from quantlab.models import load_model
    from quantlab.runtime.session import ArtifactSet

    arts = ArtifactSet(lab, "int16_w8")
    window = arts.encode(default_eval_text())[: tokens + 1]
    ref = CachedScorer(TorchScorer(load_model("gemma3-270m").model, PREFILL)).detach([window])
    ours, _ = score(LiteRTScorer(arts), ref, [window], quiet=True)
    del arts
    fp32, _ = score(ref, None, [window], quiet=True)
    res = {"quantlab": ours, "fp32": fp32, "tokens": len(window) - 1}
    if google is not None:  # None: Google's scores are reused (--reuse-google)
        res["google"], _ = score(GoogleScorer(google["quantized"], google["hf"]), ref, [window], quiet=True)
    return res


# ---------------------------------------------------------------- coverage and sizes (main process)
def coverage(pre: Path, compiled: Path) -> dict:
    """Per signature: ops before compilation, ops left on the CPU after, and dispatch ops (partitions)."""
    from quantlab.check.graph import read_ops
    from quantlab.compile.compiler import DISPATCH_OP

    total = Counter(o.signature for o in read_ops(pre))
    left, parts = Counter(), Counter()
    for o in read_ops(compiled):
        (parts if o.name == DISPATCH_OP else left)[o.signature] += 1
    return {s: {"ops_total": n, "ops_offloaded": n - left[s], "partitions": parts[s]} for s, n in total.items()}


def google_mains(work: Path) -> tuple[Path, Path]:
    """Google's main model before and after compilation, unpacked from its two bundles."""
    from litert_torch.generative.export_hf.experimental.litertlm_bundle import litertlm_bundle

    def main_of(bundle: str, folder: str) -> Path:
        return Path(litertlm_bundle.unpack_litertlm(str(work / bundle), str(work / folder))["tf_lite_prefill_decode"])

    return main_of("a16w8.litertlm", "unpacked"), main_of(f"a16w8_{_soc(work)}.litertlm", "unpacked_compiled")


def _soc(work: Path) -> str:
    return next(work.glob("a16w8_*.litertlm")).stem.split("_", 1)[1]


def _step(name: str, cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    rc, secs, peak_gb, out = run_measured(cmd, env)
    if rc != 0:
        raise SystemExit(f"{name} failed (exit {rc}):\n{out}")
    print(f"  {name}: {secs:.0f} s, peak RSS {peak_gb:.1f} GB", flush=True)
    return secs, peak_gb, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("bench-google"), help="scratch folder (kept)")
    ap.add_argument("--soc", default="SM8750")
    ap.add_argument("--tokens", type=int, default=CACHE - 1, help="evaluation tokens scored (default the whole cache)")
    ap.add_argument("--rescore", action="store_true",
                    help="reuse what --work holds: the pipelines' outputs and timings, and the scores if saved")
    ap.add_argument("--reuse-google", action="store_true",
                    help="reuse Google's pipeline outputs, timings and scores saved in --work (scoring its model "
                         "alone takes ~25 min); run and score quantlab's afresh")
    a = ap.parse_args()
    from quantlab import manifest
    from quantlab.compile.qnn_libs import library_path
    from quantlab.runtime.session import ArtifactSet

    a.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LD_LIBRARY_PATH=f"{library_path()}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    me = [sys.executable, __file__]
    lab, saved = a.work / "quantlab", a.work / "pipelines.json"
    scored = a.work / f"scores_{a.tokens}.json"
    if (a.rescore or a.reuse_google) and not saved.is_file():
        raise SystemExit(f"{saved} is missing: run once without --rescore / --reuse-google")
    if a.reuse_google and not scored.is_file():
        raise SystemExit(f"{scored} is missing: run once without --reuse-google (or with --tokens as before)")
    if a.rescore and saved.is_file():
        google, g_s, g_gb, q_s, q_peak, q_times = json.loads(saved.read_text())
    else:
        if a.reuse_google:
            google, g_s, g_gb = json.loads(saved.read_text())[:3]
        else:
            print("Google npu_export pipeline:", flush=True)
            g_s, g_gb, out = _step("google (export → calibrate → quantize → compile)",
                                   [*me, "_google", str(a.work / "google"), a.soc], env)
            google = json.loads(out.strip().splitlines()[-1])
        print("quantlab pipeline:", flush=True)
        ql = [str(Path(sys.executable).with_name("quantlab"))]
        q_steps = [("export", [*ql, "export", "--model", "gemma3-270m", "--out", str(lab), "--overwrite"]),
                   ("calibrate", [*ql, "calibrate", str(lab)]),
                   ("quantize", [*ql, "quantize", str(lab), "--scheme", "int16_w8", "--overwrite"]),
                   ("compile", None)]
        q_times, q_peak = {}, 0.0
        for name, cmd in q_steps:
            if cmd is None:  # compile takes the quantized main's path, known once quantize has run
                main_path = lab / manifest.load(lab).artifacts["int16_w8"].path
                cmd = [*ql, "compile", str(main_path), "--soc", a.soc, "--overwrite"]
            secs, gb, _ = _step(name, cmd)
            q_times[name], q_peak = secs, max(q_peak, gb)
        q_s = sum(q_times.values())
        saved.write_text(json.dumps([google, g_s, g_gb, q_s, q_peak, q_times]))
    if a.rescore and scored.is_file():
        scores = json.loads(scored.read_text())
    else:
        print(f"scoring {'quantlab' if a.reuse_google else 'both'} against PyTorch FP32 ...", flush=True)
        _, _, out = _step("scoring", [*me, "_score", str(lab), json.dumps(None if a.reuse_google else google),
                                      str(a.tokens)])
        scores = json.loads(out.strip().splitlines()[-1])
        if a.reuse_google:
            scores["google"] = json.loads(scored.read_text())["google"]
        scored.write_text(json.dumps(scores))

    data = manifest.load(lab)
    q_main = lab / data.artifacts["int16_w8"].path
    q_comp = next(lab.glob(f"*int16_w8_aot_{a.soc.lower()}.tflite"))
    g_pre, g_comp = google_mains(a.work / "google")
    cov = {"quantlab": coverage(q_main, q_comp), "google": coverage(g_pre, g_comp)}
    q_embedder = lab / data.artifacts[ArtifactSet(lab, "int16_w8").embedder_key].path
    report(a, scores, cov, {"quantlab": (q_s, q_peak, q_times), "google": (g_s, g_gb, google["times"])},
           {"quantlab": (q_main, q_comp), "google": (g_pre, g_comp)},
           {"quantlab": q_comp.stat().st_size + q_embedder.stat().st_size,
            "google": Path(google["compiled"]).stat().st_size})
    return 0


def report(a, scores, cov, times, mains, bundles) -> None:
    q, g = scores["quantlab"], scores["google"]
    print(f"\nGemma3-270M (real weights), {scores['tokens']} tokens of held-out English text, reference PyTorch FP32 "
          f"(perplexity {scores['fp32']['perplexity']:.3f}); SoC {a.soc}; this machine, {os.cpu_count()} cores")
    print(f"{'':28s} {'quantlab int16_w8':>18s} {'Google A16W8':>14s} {'ratio q/g':>10s}")
    for k, label in (("perplexity", "perplexity"), ("kl", "KL vs FP32"), ("top1_agreement", "top-1 agreement")):
        print(f"{label:28s} {q[k]:18.4f} {g[k]:14.4f} {q[k] / g[k]:10.3f}")
    for name, i in (("main (quantized) MB", 0), ("main (compiled) MB", 1)):
        qs, gs = mains["quantlab"][i].stat().st_size / 1e6, mains["google"][i].stat().st_size / 1e6
        print(f"{name:28s} {qs:18.1f} {gs:14.1f} {qs / gs:10.3f}")
    qb, gb = bundles["quantlab"] / 1e6, bundles["google"] / 1e6
    print(f"{'shipped (compiled+embedder) MB':28s} {qb:18.1f} {gb:14.1f} {qb / gb:10.3f}")
    for who in ("quantlab", "google"):
        for sig, c in cov[who].items():
            print(f"  NPU {who:9s} {sig:14s} {c['ops_offloaded']}/{c['ops_total']} ops, {c['partitions']} partition(s)")
    (qs, qgb, qt), (gs, ggb, gt) = times["quantlab"], times["google"]
    print(f"{'pipeline time s':28s} {qs:18.0f} {gs:14.0f} {qs / gs:10.3f}")
    print(f"{'pipeline peak RSS GB':28s} {qgb:18.1f} {ggb:14.1f} {qgb / ggb:10.3f}")
    print("  quantlab steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in qt.items()))
    print("  Google steps:   " + ", ".join(f"{k} {v:.0f} s" for k, v in gt.items()))
    print(f"\nper position bucket ({BUCKET} positions): KL quantlab / Google, top-1 quantlab / Google")
    qb_, gb_ = q.get("by_position", []), g.get("by_position", [])
    for x, y in zip(qb_, gb_):
        print(f"  {x['from']:5d}-{x['to']:5d}  KL {x['kl']:.4f} / {y['kl']:.4f}   top-1 {x['top1_agreement']:.3f} / "
              f"{y['top1_agreement']:.3f}   {'quantlab better' if x['kl'] < y['kl'] else 'Google better'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_google":
        print(json.dumps(google_pipeline(Path(sys.argv[2]), sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "_score":
        print(json.dumps(score_both(Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])),
                         default=lambda o: o.tolist() if hasattr(o, "tolist") else float(o)))
    else:
        sys.exit(main())
