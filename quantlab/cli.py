"""The `quantlab` command: parse arguments, call the API (quantlab/api.py), print, turn errors into exit codes.

Exit codes: 0 success; 2 bad input (one line saying what is wrong and what is allowed); 1 internal failure, a step
killed for memory (one line naming it), `check` found violations or a compile failed; 130 interrupted (Ctrl-C), with
the command that resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from quantlab import api
from quantlab.errors import StepKilled, UserError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # LiteRT/absl info lines are noise for users

HADAMARD_HELP = ("block-Hadamard rotations folded around the fully-connected layers (same function; on by default), "
                 "for int8 activations on them: 270M a16_a8 on 90.7%% of the weights +18.1%% -> +4.9%% ppl; int16_w8 "
                 "KL 0.022 -> 0.021; --no-hadamard: the graph without them (~330 ops fewer per signature)")
ROTATE_HELP = ("spread the K largest residual channels by a rotation before export (same function; default 1: the "
               "270M's one massive channel; 0: none)")
PREFILL_HELP = ("tokens per prefill call (default 64: with the 1280-slot cache the prefill attention-mask ADD stays under "
                "the 1 MiB Qualcomm's HTP handles, LiteRT-LM #3508; 128 needs --cache-len 896 or less)")
MODEL_HELP = "gemma3-270m (bundled, real weights), tiny-random, gemma3-1b-random, an HF folder or a .gguf"


def _schemes(values: list[list[str]] | None) -> list[str]:
    """`--scheme a b`, `--scheme a,b` and repeated flags all mean the same list."""
    return [s for group in values or [] for v in group for s in v.split(",") if s]


def _export(a: argparse.Namespace) -> int:
    data = api.export_model(a.model, a.out, a.prefill_len, a.cache_len, a.rotate, a.hadamard, a.smooth, a.overwrite)
    for key, art in data.artifacts.items():
        print(f"{key:14s} {art.path}  {art.bytes / 1e6:.1f} MB")
    print(f"export took {sum(data.export.seconds.values()):.1f} s; wrote {a.out}")
    return 0


def _generate(a: argparse.Namespace) -> int:
    g = api.generate_text(a.dir, a.prompt, a.variant, a.max_new_tokens, a.temperature, a.top_k, a.seed, a.threads)
    print(a.prompt + g.text)
    tag = " (random weights)" if g.random_weights else ""
    print(f"\n[{g.model}{tag} {a.variant}] {g.prompt_tokens} prompt tokens at {g.prefill_tps:.1f} tok/s, {len(g.tokens)} new tokens, "
          f"decode {g.decode_tps:.1f} tok/s, stop: {g.stop_reason}", file=sys.stderr)
    return 0


def _eval(a: argparse.Namespace) -> int:
    from quantlab import manifest
    from quantlab.texts import read_text

    if a.backend == "htp-sim":
        return _eval_sim(a)
    if a.per_op and a.variant == "fp32":
        raise UserError("--per-op compares a quantized variant with fp32; pass --variant int8 (or another)")
    text = read_text(Path(a.text))
    res = api.evaluate_model(a.dir, text, a.variant, a.reference, a.max_tokens, a.decode_steps, a.threads, a.runtime)
    if a.runtime == "litert-lm":
        if a.json:
            print(json.dumps(manifest.to_dict(res), indent=2))
            return 0
        tag = " (random weights: accuracy means nothing)" if res.random_weights else ""
        print(f"{res.model} {res.variant} through LiteRT-LM{tag}: {res.tokens_scored} tokens in {res.windows} window(s)")
        print(f"  perplexity        {res.perplexity:.4f}  ({res.speed['scoring_tokens_per_s']:.1f} tokens/s scored)")
        return 0
    if a.per_op:
        from quantlab.evaluate.tensor_error import tensor_errors

        res.per_op = tensor_errors(Path(a.dir), a.variant, text)
    if a.json:
        print(json.dumps(manifest.to_dict(res), indent=2))
        return 0
    tag = " (random weights: accuracy means nothing)" if res.random_weights else ""
    print(f"{res.model} {res.variant}{tag}: {res.tokens_scored} tokens in {res.windows} window(s)")
    print(f"  perplexity        {res.perplexity:.4f}")
    if res.kl is not None:
        print(f"  vs {res.reference}: KL {res.kl:.5f}, top-1 agreement {100 * res.top1_agreement:.2f} %, "
              f"max |logit diff| {res.max_abs_logit_diff:.3g}")
    sp = res.speed
    print(f"  prefill {sp['prefill_tokens_per_s']:.1f} tok/s ({sp['prefill_tokens']} tokens), "
          f"decode {sp['decode_tokens_per_s']:.1f} tok/s, threads {sp['threads']}")
    print(f"  peak RSS {res.peak_rss_mb_runtime:.0f} MB (runtime), {res.peak_rss_mb:.0f} MB (with reference)")
    if res.per_op:
        po = res.per_op
        print(f"  per-op SNR vs fp32 on {po['input']}")
        fb = po["first_below_20db"]
        if fb:
            print(f"  first op below 20 dB: op {fb['op_index']} {fb['op']} in {fb['module']} "
                  f"(layer {fb['layer']}): {fb['snr_db']} dB")
        for op, st in po["by_op_type"].items():
            print(f"    {op:18s} median {st['median_db']:6.1f} dB, min {st['min_db']:6.1f} dB, {st['count']} tensors")
    return 0


def _eval_sim(a: argparse.Namespace) -> int:
    from quantlab.texts import read_text

    res = api.simulate_npu(a.dir, a.variant, a.soc, read_text(Path(a.text)), a.sim_positions, a.sim_chunk)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    d, p = res["decode"], res["prefill"]
    print(f"{a.variant} compiled for {res['soc']} on the QNN HTP simulator ({len(res['positions'])} decode positions):")
    if "crashed" in d:
        print(f"  decode: {d['crashed']}")
    else:
        print(f"  decode vs CPU interpreter: KL {d['kl_vs_cpu']:.5f}, top-1 {d['top1_vs_cpu']:.1%}; vs FP32: simulated "
              f"KL {d['kl_sim_vs_fp32']:.4f} top-1 {d['top1_sim_vs_fp32']:.1%}, CPU KL {d['kl_cpu_vs_fp32']:.4f} "
              f"top-1 {d['top1_cpu_vs_fp32']:.1%}; {d['seconds_per_call']:.2f} s per call")
    if "crashed" in p:
        print(f"  prefill chunk {p['chunk']}: {p['crashed']}")
    elif "skipped" not in p:
        print(f"  prefill chunk {p['chunk']} (positions {p['positions'][0]}-{p['positions'][1]}): K/V slices vs CPU "
              f"relative error {p['kv_relative_error_mean']:.4f} (max {p['kv_relative_error_max']:.4f}), "
              f"{p['kv_max_steps']:.0f} steps at worst; {p['seconds_per_call']:.2f} s per call")
    return 0


def _calibrate(a: argparse.Namespace) -> int:
    meta = api.calibrate_model(a.dir, a.text or (), a.samples, a.decode_stride, a.hessians, a.ranges, a.capture)
    print(f"calibrated on {meta['tokens']} tokens ({meta['windows']} windows, positions 0-{meta['max_position']}): "
          + ", ".join(f"{n} {k} samples" for k, n in meta["samples"].items())
          + f"; {meta['seconds']:.0f} s, peak RSS {meta['peak_rss_mb'] / 1e3:.1f} GB")
    return 0


def _quantize(a: argparse.Namespace) -> int:
    from quantlab.quantize.schemes import parse_all

    for scheme in parse_all(_schemes(a.scheme) or ["int16_w8"]):  # every scheme checked before the first runs
        rec = api.quantize_model(a.dir, scheme, a.embedder, a.rounding, a.overwrite)
        q = rec.quantize
        print(f"{scheme.name}: {rec.path}  {rec.bytes / 1e6:.1f} MB, I/O {rec.io_dtype['embeddings']}, "
              f"{q.seconds:.0f} s, weights {q.weight_rounding}; ships with {rec.embedder}")
    return 0


def _analyze(a: argparse.Namespace) -> int:
    res = api.analyze_model(a.dir, a.tolerance, a.soc, a.tokens, a.float_column)
    sens, s = res["sensitivity"], res["search"]
    print(f"sensitivity on {res['tokens']} tokens of calibration-domain text, KL vs fp32 (all int16: "
          f"{sens['all_int16']['kl']:.4f}, all int8: {sens['all_int8']['kl']:.4f}); one group changed:")
    for r in sens["rows"]:
        left = (f" | left float KL {r['kl_float']:.4f} top-1 {r['top1_float']:6.1%}" if r["kl_float"] is not None
                else "")
        print(f"  {r['group']:10s} at int8 KL {r['kl_8']:.4f} top-1 {r['top1_8']:6.1%}{left}")
    print(f"mixed-precision candidates (int16 elsewhere; compiled for {s['soc']}):")
    for c in s["candidates"]:
        npu = "compiles fully" if c["fully_offloaded"] else "does NOT compile fully"
        print(f"  {c['name']:45s} int8 FC weights {c['int8_weight_share']:6.1%}  ppl x{c['perplexity_ratio']:.3f}  "
              f"KL {c['kl']:.4f}  top-1 {c['top1_agreement']:.1%}  {npu}")
    if s["chosen"]:
        how = "within" if s["chosen_within_tolerance"] else "NONE within"
        print(f"chosen: {s['chosen']} ({how} perplexity x{s['tolerance']}); recipe: {a.dir}/recipes/{s['chosen']}.json")
    else:
        print("no candidate with int8 activations compiles fully; nothing chosen")
    print(f"analysis took {res['seconds']:.0f} s; wrote {a.dir}/analysis.json")
    return 0


def _check(a: argparse.Namespace) -> int:
    found = api.check_model(a.model, a.target)
    if a.json:
        print(json.dumps({"model": a.model, "violations": [v.as_dict() for v in found]}, indent=2))
    else:
        for v in found:
            print(v.line())
        rules = "LiteRT kernel and QNN HTP rules" if a.target == "qnn" else "LiteRT kernel rules"
        print(f"{a.model}: {len(found)} violation(s) of {rules}" if found else f"{a.model}: OK ({rules})")
    return 1 if found else 0


def _compile(a: argparse.Namespace) -> int:
    from quantlab.compile.compiler import CompileFailed
    from quantlab.compile.socs import resolve_soc

    socs = [resolve_soc(s) for s in a.soc]  # every name checked before the first compile
    if a.out and len(socs) > 1:
        raise UserError("--out names one file; give one --soc, or leave --out out to name files per SoC")
    failed = 0
    for soc in socs:
        try:
            res = api.compile_model(a.model, [soc], a.out, a.overwrite, not a.no_weight_sharing)[0]
        except CompileFailed as exc:
            failed += 1
            print(f"{exc.soc}: FAILED — the compiler said:")
            for line in exc.errors[:12] or [exc.log_tail]:
                print(f"  {line}")
            continue
        print(f"{res.soc}: {res.path.name}  {res.bytes / 1e6:.1f} MB ({res.bytes / res.input_bytes:.2f}x the input), "
              f"{res.seconds:.0f} s, peak RSS {res.peak_rss_mb / 1e3:.1f} GB, weight sharing "
              f"{'on' if res.weight_sharing else 'off'}")
        for sig, c in res.coverage.items():
            print(f"  {sig:12s} {c['ops_offloaded']} / {c['ops_total']} ops offloaded to the NPU, "
                  f"{c['partitions']} partition(s)")
        for r in res.rejected:
            print(f"  on CPU: {r.signature} op {r.op_index} {r.op} ({' x '.join(r.qnn_io)}): {r.reason} "
                  f"[QNN error {r.qnn_error}]")
    return 1 if failed else 0


def _run(a: argparse.Namespace) -> int:
    res = api.run_lab(
        a.model, a.out, _schemes(a.schemes), log_file=Path(a.out) / "quantlab.log", verbose=a.verbose,
        socs=tuple(a.soc or ["SM8750"]), calib_texts=tuple(Path(t) for t in a.calib_text or ()),
        eval_text=Path(a.eval_text) if a.eval_text else None, prefill_len=a.prefill_len, cache_len=a.cache_len,
        calib_windows=a.calib_windows, eval_tokens=a.eval_tokens, overwrite=a.overwrite, analyze=not a.no_analyze,
        tolerance=a.tolerance, search_soc=a.search_soc, smooth_alpha=a.smooth, per_op=not a.no_per_op,
        embedder=a.embedder, rotate=a.rotate, hadamard=a.hadamard, bundles=not a.no_bundle, npu_sim=a.npu_sim,
        npu_sim_positions=a.npu_sim_positions)
    print(f"lab finished in {res['seconds']:.0f} s: {res['out']}/report.md, {res['out']}/report.html")
    for stage, t in res["timings"].items():
        print(f"  {stage:10s} {t['seconds']:7.1f} s  ({t['ran']} run, {t['skipped']} unchanged)")
    return 0


def _bundle(a: argparse.Namespace) -> int:
    for soc in a.soc or [None]:
        rec = api.build_bundle(a.dir, a.variant, soc, a.overwrite)
        print(f"{rec.path}  {rec.bytes / 1e6:.1f} MB (main {rec.source}, embedder {rec.embedder}); "
              f"run `litert-lm-peek --litertlm_file {Path(a.dir) / rec.path}` to list its sections")
    return 0


def _sweep(a: argparse.Namespace) -> int:
    lab_args = [*(["--no-analyze"] if a.no_analyze else []), *(["--no-bundle"] if a.no_bundle else []),
                *(["--prefill-len", str(a.prefill_len)] if a.prefill_len else []),
                *(["--cache-len", str(a.cache_len)] if a.cache_len else []),
                *(["--eval-tokens", str(a.eval_tokens)] if a.eval_tokens else []),
                *(["--no-per-op"] if a.no_per_op else [])]
    res = api.run_sweep(_schemes(a.models), _schemes(a.schemes) or ["int8", "int16_w8"], a.soc or ["SM8750"],
                        a.out, a.ray_address, lab_args, log=lambda s: print(s, file=sys.stderr, flush=True))
    failed = [lab for lab in res["labs"] if lab["returncode"] != 0]
    print(f"sweep of {len(res['labs'])} lab(s): {res['report']}, {res['html']}"
          + (f"; {len(failed)} failed: " + ", ".join(lab["model"] for lab in failed) if failed else ""))
    return 1 if failed else 0


def _report(a: argparse.Namespace) -> int:
    md, page = api.write_report(a.dir)
    print(f"wrote {md} and {page}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from quantlab.quantize.embedder import EMBEDDERS
    from quantlab.quantize.rounding import ROUNDINGS
    from quantlab.quantize.schemes import help_line
    schemes_help = help_line().replace("%", "%%")  # argparse formats help with %

    p = argparse.ArgumentParser(prog="quantlab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="the whole lab: export → calibrate → quantize → check → compile → evaluate → report")
    r.add_argument("--model", default="gemma3-270m", help=MODEL_HELP)
    r.add_argument("--out", default="out", help="artifact folder (default ./out); re-running resumes it")
    r.add_argument("--schemes", "--scheme", action="append", nargs="+", default=None,
                   help=f"schemes, space- or comma-separated: {schemes_help}; searched names (a16_a8-lm_head) or "
                        "recipe .json files; default int8,int16_w8")
    r.add_argument("--soc", action="append", default=None, help="SoC to compile for (repeatable; default SM8750)")
    r.add_argument("--calib-text", action="append", default=None, help="calibration .txt/.jsonl (repeatable)")
    r.add_argument("--eval-text", default=None, help="evaluation .txt (default: Python docs kept out of calibration)")
    r.add_argument("--eval-tokens", type=int, default=None, help="tokens scored (default: one cache window)")
    r.add_argument("--calib-windows", type=int, default=2, help="calibration windows of the cache length")
    r.add_argument("--prefill-len", type=int, default=64, help=PREFILL_HELP)
    r.add_argument("--cache-len", type=int, default=1280)
    r.add_argument("--no-analyze", action="store_true",
                   help="skip the sensitivity analysis and mixed-precision search (and its variant)")
    r.add_argument("--search-soc", default="SM8750", help="SoC every search candidate must compile for")
    r.add_argument("--no-per-op", action="store_true",
                   help="skip the per-tensor SNR analysis in evaluate (it holds every tensor of two mains: too big "
                        "for the 1B in 24 GB)")
    r.add_argument("--embedder", choices=list(EMBEDDERS), default="int8",
                   help="the embedder quantized mains ship with (default int8: 4x smaller, KL +0.002 on the 270M)")
    r.add_argument("--tolerance", type=float, default=1.05,
                   help="mixed-precision search: allowed perplexity ratio to fp32 (default 1.05)")
    r.add_argument("--smooth", type=float, default=0.0, metavar="ALPHA",
                   help="SmoothQuant scale migration before export (default 0: none)")
    r.add_argument("--rotate", type=int, default=1, metavar="K", help=ROTATE_HELP)
    r.add_argument("--hadamard", action=argparse.BooleanOptionalAction, default=True, help=HADAMARD_HELP)
    r.add_argument("--npu-sim", action="store_true",
                   help="also run each compiled main on the QNN HTP simulator against the CPU and FP32 (slow: ~10 s "
                        "per 270M decode call)")
    r.add_argument("--npu-sim-positions", type=int, default=32, help="decode positions the simulator checks")
    r.add_argument("--no-bundle", action="store_true",
                   help="skip the .litertlm bundles (and their LiteRT-LM evaluation)")
    r.add_argument("--overwrite", action="store_true", help="redo everything, replacing what is in --out")
    r.add_argument("--verbose", action="store_true",
                   help="show the libraries' own output too (by default it goes to DIR/quantlab.log only)")
    r.set_defaults(func=_run)

    sw = sub.add_parser("sweep", help="a grid of labs (models x schemes x SoCs) on Ray, merged into one report")
    sw.add_argument("--models", action="append", nargs="+", required=True,
                    help="models, space- or comma-separated (as --model of run takes them)")
    sw.add_argument("--schemes", "--scheme", action="append", nargs="+", default=None, help="as run's (default int8,int16_w8)")
    sw.add_argument("--soc", action="append", default=None, help="SoC (repeatable; default SM8750)")
    sw.add_argument("--out", required=True, help="sweep folder: one lab folder per model, sweep.md/html/json")
    sw.add_argument("--ray-address", default=None,
                    help="a Ray cluster (host:port); default: a local Ray on this machine")
    sw.add_argument("--no-analyze", action="store_true", help="labs without the mixed-precision search")
    sw.add_argument("--no-bundle", action="store_true", help="labs without .litertlm bundles")
    sw.add_argument("--prefill-len", type=int, default=None)
    sw.add_argument("--cache-len", type=int, default=None)
    sw.add_argument("--eval-tokens", type=int, default=None)
    sw.add_argument("--no-per-op", action="store_true")
    sw.set_defaults(func=_sweep)

    rp = sub.add_parser("report", help="write report.md + report.html from DIR/manifest.json")
    rp.add_argument("dir")
    rp.set_defaults(func=_report)

    e = sub.add_parser("export", help="FP32 embedder + main in the NPU layout, tokenizer, manifest.json")
    e.add_argument("--model", default="gemma3-270m", help=MODEL_HELP)
    e.add_argument("--out", required=True, help="artifact folder")
    e.add_argument("--prefill-len", type=int, default=64, help=PREFILL_HELP)
    e.add_argument("--cache-len", type=int, default=1280, help="KV cache slots = longest context (default 1280)")
    e.add_argument("--smooth", type=float, default=0.0, metavar="ALPHA",
                   help="SmoothQuant scale migration before export, e.g. 0.5 (default 0: none); helps int8 activations")
    e.add_argument("--rotate", type=int, default=1, metavar="K", help=ROTATE_HELP)
    e.add_argument("--hadamard", action=argparse.BooleanOptionalAction, default=True, help=HADAMARD_HELP)
    e.add_argument("--overwrite", action="store_true", help="replace existing artifacts")
    e.set_defaults(func=_export)

    g = sub.add_parser("generate", help="text from an artifact folder")
    g.add_argument("dir")
    g.add_argument("--variant", default="fp32", help="which main: fp32 (default), int8, int16_w8, ...")
    g.add_argument("--prompt", required=True)
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest (0 = all)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=None, help="CPU threads for LiteRT (default: all)")
    g.set_defaults(func=_generate)

    c = sub.add_parser("calibrate", help="run real text through the FP32 pipeline; save ranges (calibration.json)")
    c.add_argument("dir")
    c.add_argument("--text", nargs="*", default=None,
                   help=".txt/.jsonl files (default: litert-torch's calibration prompts + Python's docs)")
    c.add_argument("--samples", type=int, default=2,
                   help="text windows; each gives cache_len/prefill_len prefill samples and as many decode ones")
    c.add_argument("--decode-stride", type=int, default=1,
                   help="a decode sample every N positions (default 1: every one; decode alone has the LM head, whose "
                        "logits range needs them all: 270M int16_w8, unrotated, KL 0.039 at 1, 0.054 at 8)")
    c.add_argument("--ranges", choices=("min_max", "moving_average"), default="min_max",
                   help="how samples' ranges merge: true min/max (default) or ai-edge-quantizer's moving average")
    c.add_argument("--capture", choices=("profiler", "all_tensors"), default="profiler",
                   help="profiler (default, low memory) or all_tensors (ai-edge-quantizer's default); same ranges")
    c.add_argument("--hessians", action="store_true",
                   help="also save the FC-input statistics `quantize --rounding gptq` needs (DIR/hessians.npz; 270M: "
                        "440 MB, calibration 190 -> 850 s)")
    c.set_defaults(func=_calibrate)

    q = sub.add_parser("quantize", help="PTQ of main with a scheme: " + schemes_help)
    q.add_argument("dir")
    q.add_argument("--scheme", "--schemes", action="append", nargs="+", default=None,
                   help="shipped schemes (int8, int16_w8, dynamic_int8), searched names (a16_a8-lm_head) or recipe "
                        ".json files (e.g. DIR/recipes/<chosen>.json); space- or comma-separated; default int16_w8")
    q.add_argument("--embedder", choices=list(EMBEDDERS), default="int8",
                   help="the embedder the main ships with: int8 table, per-row scales (default; 270M: 174 vs 671 MB, "
                        "KL +0.002) or fp32 (to measure the main's own error alone)")
    q.add_argument("--rounding", choices=list(ROUNDINGS), default="nearest",
                   help="weight rounding: nearest (default), octav or mse (per-channel clipping, for 4-bit weights), "
                        "or gptq (ai-edge-quantizer's GPTQ with the Hessians "
                        "of `calibrate --hessians`; 270M int16_w8: top-1 91.4 -> 93.5 %%, KL 0.022 -> 0.023)")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=_quantize)

    an = sub.add_parser("analyze", help="per-op-group sensitivity (8/16-bit/float) + mixed-precision search that "
                                        "must compile for the NPU; saves DIR/recipes/<chosen>.json")
    an.add_argument("dir")
    an.add_argument("--tolerance", type=float, default=1.05,
                    help="allowed perplexity ratio to fp32 on calibration-domain text (default 1.05 = +5 %%)")
    an.add_argument("--soc", default="SM8750", help="SoC every candidate must compile for (default SM8750)")
    an.add_argument("--tokens", type=int, default=256, help="tokens of calibration-domain text scored per candidate")
    an.add_argument("--float-column", action="store_true",
                    help="also measure each op group left float (what int16 on it costs; doubles the sensitivity time)")
    an.set_defaults(func=_analyze)

    k = sub.add_parser("check", help="LiteRT kernel rules on any .tflite; exit 1 when violated")
    k.add_argument("model")
    k.add_argument("--target", choices=["litert", "qnn"], default="litert",
                   help="litert: LiteRT CPU kernel rules; qnn: also the Qualcomm HTP rules measured with the compiler")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=_check)

    m = sub.add_parser("compile", help="Qualcomm NPU (QNN HTP) AOT compile; prints NPU coverage per signature")
    m.add_argument("model", help="a main .tflite (e.g. DIR/<name>_main_int8.tflite)")
    m.add_argument("--soc", action="append", required=True, help="SoC, e.g. SM8750 (repeat for several)")
    m.add_argument("--out", default=None, help="output file (default: <model>_aot_<soc>.tflite beside the model)")
    m.add_argument("--no-weight-sharing", action="store_true",
                   help="store weights once per signature (bigger; only to measure what sharing saves)")
    m.add_argument("--overwrite", action="store_true")
    m.set_defaults(func=_compile)

    v = sub.add_parser("eval", help="perplexity, KL/top-1 vs a reference, speed, memory")
    v.add_argument("dir")
    v.add_argument("--variant", default="fp32")
    v.add_argument("--text", required=True, help="UTF-8 text file to score")
    v.add_argument("--reference", default=None,
                   help="'torch' (the PyTorch model), a variant in DIR (e.g. fp32), or another artifact folder")
    v.add_argument("--max-tokens", type=int, default=None, help="score at most this many tokens of the text")
    v.add_argument("--decode-steps", type=int, default=32, help="decode calls timed for tokens/s")
    v.add_argument("--threads", type=int, default=None)
    v.add_argument("--per-op", action="store_true",
                   help="also SNR of every tensor vs fp32 on one real prefill call: where accuracy is lost")
    v.add_argument("--json", action="store_true", help="print the full result as JSON")
    v.add_argument("--backend", choices=["cpu", "htp-sim"], default="cpu",
                   help="cpu: LiteRT's CPU interpreter (default); htp-sim: the compiled main on the QNN HTP simulator, "
                        "a spot check against the CPU and FP32 (slow: ~10 s per 270M decode call)")
    v.add_argument("--soc", default="SM8750", help="with --backend htp-sim: the SoC to compile for (default SM8750)")
    v.add_argument("--sim-positions", type=int, default=32, help="with --backend htp-sim: decode positions checked")
    v.add_argument("--sim-chunk", type=int, default=1, help="with --backend htp-sim: the prefill chunk checked")
    v.add_argument("--runtime", choices=["quantlab", "litert-lm"], default="quantlab",
                   help="quantlab: its own host runtime (KL, top-1, speed); litert-lm: Google's LiteRT-LM on the "
                        "variant's .litertlm bundle (perplexity by position)")
    v.set_defaults(func=_eval)

    b = sub.add_parser("bundle", help="a .litertlm for a variant (compiled with --soc) that LiteRT-LM loads")
    b.add_argument("dir")
    b.add_argument("--variant", required=True, help="fp32, int16_w8, ... (see manifest.json)")
    b.add_argument("--soc", action="append", default=None, help="bundle the variant's compiled main for this SoC")
    b.add_argument("--overwrite", action="store_true")
    b.set_defaults(func=_bundle)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="quantlab: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"quantlab: error: {exc}", file=sys.stderr)
        return 2
    except StepKilled as exc:
        print(f"quantlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        again = "quantlab " + shlex.join(argv)
        what = f"resume with: {again}" if args.command == "run" else f"re-run to redo it: {again}"
        print(f"quantlab: interrupted; no partial artifact was left behind; {what}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
