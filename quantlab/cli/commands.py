"""What each `quantlab` sub-command does: call the API (quantlab/api.py) and print its result for a person."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quantlab import api
from quantlab.console import err, out
from quantlab.errors import UserError
from quantlab.quantize.schemes import DEFAULT_SCHEMES


def _schemes(values: list[list[str]] | None) -> list[str]:
    """`--scheme a b`, `--scheme a,b` and repeated flags all mean the same list."""
    return [s for group in values or [] for v in group for s in v.split(",") if s]


def cmd_export(a: argparse.Namespace) -> int:
    data = api.export_model(a.model, a.out, a.prefill_len, a.cache_len, a.rotate, a.hadamard, a.smooth, a.overwrite)
    for key, art in data.artifacts.items():
        print(f"{key:14s} {art.path}  {art.bytes / 1e6:.1f} MB", file=out())
    print(f"export took {sum(data.export.seconds.values()):.1f} s; wrote {a.out}", file=out())
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from quantlab.runtime.htp_sim import SimCrash

    try:
        g = api.generate_text(a.dir, a.prompt, a.variant, a.max_new_tokens, a.temperature, a.top_k, a.seed,
                              a.threads, a.backend, a.soc)
    except SimCrash as exc:  # a measured result about the compiled graph, not a failure of quantlab
        print(f"quantlab: the HTP simulator could not run {a.variant}: {exc}", file=err())
        return 1
    print(a.prompt + g.text, file=out())
    tag = " (random weights)" if g.random_weights else ""
    print(f"\n[{g.model}{tag} {a.variant}, {g.backend}] {g.prompt_tokens} prompt tokens at {g.prefill_tps:.1f} tok/s, "
          f"{len(g.tokens)} new tokens, "
          f"decode {g.decode_tps:.1f} tok/s, stop: {g.stop_reason}", file=err())
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from quantlab import manifest
    from quantlab.texts import read_text

    if a.backend == "htp-sim":
        return cmd_eval_sim(a)
    if a.per_op and a.variant == "fp32":
        raise UserError("--per-op compares a quantized variant with fp32; pass --variant int8 (or another)")
    text = read_text(Path(a.text))
    res = api.evaluate_model(a.dir, text, a.variant, a.reference, a.max_tokens, a.decode_steps, a.threads, a.runtime)
    if a.runtime == "litert-lm":
        if a.json:
            print(json.dumps(manifest.to_dict(res), indent=2), file=out())
            return 0
        tag = " (random weights: accuracy means nothing)" if res.random_weights else ""
        print(f"{res.model} {res.variant} through LiteRT-LM{tag}: {res.tokens_scored} tokens in "
              f"{res.windows} window(s)", file=out())
        print(f"  perplexity        {res.perplexity:.4f}  ({res.speed['scoring_tokens_per_s']:.1f} tokens/s scored)",
              file=out())
        return 0
    if a.per_op:
        from quantlab.evaluate.tensor_error import tensor_errors

        res.per_op = tensor_errors(Path(a.dir), a.variant, text)
    if a.json:
        print(json.dumps(manifest.to_dict(res), indent=2), file=out())
        return 0
    tag = " (random weights: accuracy means nothing)" if res.random_weights else ""
    print(f"{res.model} {res.variant}{tag}: {res.tokens_scored} tokens in {res.windows} window(s)", file=out())
    print(f"  perplexity        {res.perplexity:.4f}", file=out())
    if res.kl is not None:
        print(f"  vs {res.reference}: KL {res.kl:.5f}, top-1 agreement {100 * res.top1_agreement:.2f} %, "
              f"max |logit diff| {res.max_abs_logit_diff:.3g}", file=out())
    sp = res.speed
    print(f"  prefill {sp['prefill_tokens_per_s']:.1f} tok/s ({sp['prefill_tokens']} tokens), "
          f"decode {sp['decode_tokens_per_s']:.1f} tok/s, threads {sp['threads']}", file=out())
    print(f"  peak RSS {res.peak_rss_mb_runtime:.0f} MB (runtime), {res.peak_rss_mb:.0f} MB (with reference)",
          file=out())
    if res.per_op:
        po = res.per_op
        print(f"  per-op SNR vs fp32 on {po['input']}", file=out())
        fb = po["first_below_20db"]
        if fb:
            print(f"  first op below 20 dB: op {fb['op_index']} {fb['op']} in {fb['module']} "
                  f"(layer {fb['layer']}): {fb['snr_db']} dB", file=out())
        for op, st in po["by_op_type"].items():
            print(f"    {op:18s} median {st['median_db']:6.1f} dB, min {st['min_db']:6.1f} dB, {st['count']} tensors",
                  file=out())
    return 0


def cmd_eval_sim(a: argparse.Namespace) -> int:
    from quantlab.texts import read_text

    res = api.simulate_npu(a.dir, a.variant, a.soc, read_text(Path(a.text)), a.sim_positions, a.sim_chunk)
    if a.json:
        print(json.dumps(res, indent=2), file=out())
        return 0
    d, p = res["decode"], res["prefill"]
    print(f"{a.variant} compiled for {res['soc']} on the QNN HTP simulator ({len(res['positions'])} decode "
          "positions):", file=out())
    if "crashed" in d:
        print(f"  decode: {d['crashed']}", file=out())
    else:
        print(f"  decode vs CPU interpreter: KL {d['kl_vs_cpu']:.5f}, top-1 {d['top1_vs_cpu']:.1%}; vs FP32: simulated "
              f"KL {d['kl_sim_vs_fp32']:.4f} top-1 {d['top1_sim_vs_fp32']:.1%}, CPU KL {d['kl_cpu_vs_fp32']:.4f} "
              f"top-1 {d['top1_cpu_vs_fp32']:.1%}; {d['seconds_per_call']:.2f} s per call", file=out())
    if "crashed" in p:
        print(f"  prefill chunk {p['chunk']}: {p['crashed']}", file=out())
    elif "skipped" not in p:
        print(f"  prefill chunk {p['chunk']} (positions {p['positions'][0]}-{p['positions'][1]}): K/V slices vs CPU "
              f"relative error {p['kv_relative_error_mean']:.4f} (max {p['kv_relative_error_max']:.4f}), "
              f"{p['kv_max_steps']:.0f} steps at worst; {p['seconds_per_call']:.2f} s per call", file=out())
    return 0


def cmd_calibrate(a: argparse.Namespace) -> int:
    meta = api.calibrate_model(a.dir, a.text or (), a.samples, a.decode_stride, a.hessians, a.ranges, a.capture,
                               a.head == "host", a.processes)
    print(f"calibrated on {meta['tokens']} tokens ({meta['windows']} windows, positions 0-{meta['max_position']}): "
          + ", ".join(f"{n} {k} samples" for k, n in meta["samples"].items())
          + f"; {meta['seconds']:.0f} s, peak RSS {meta['peak_rss_mb'] / 1e3:.1f} GB"
          + "".join(f", {len(w)} workers' {' + '.join(f'{x / 1e3:.1f}' for x in w)} GB"
                    for w in [meta.get("worker_peak_rss_mb")] if w), file=out())
    return 0


def cmd_quantize(a: argparse.Namespace) -> int:
    from quantlab.quantize.schemes import parse_all

    for scheme in parse_all(_schemes(a.scheme) or ["int16_w8"]):  # every scheme checked before the first runs
        rec = api.quantize_model(a.dir, scheme, a.embedder, a.rounding, a.overwrite)
        q = rec.quantize
        print(f"{scheme.name}: {rec.path}  {rec.bytes / 1e6:.1f} MB, I/O {rec.io_dtype['embeddings']}, "
              f"{q.seconds:.0f} s, weights {q.weight_rounding}; ships with {rec.embedder}", file=out())
    return 0


def cmd_analyze(a: argparse.Namespace) -> int:
    res = api.analyze_model(a.dir, a.tolerance, a.soc, a.tokens, a.float_column, a.full_search, a.opt_level)
    sens, s = res["sensitivity"], res["search"]
    print(f"sensitivity on {res['tokens']} tokens of calibration-domain text, KL vs fp32 (all int16: "
          f"{sens['all_int16']['kl']:.4f}, all int8: {sens['all_int8']['kl']:.4f}); one group changed:", file=out())
    for r in sens["rows"]:
        left = (f" | left float KL {r['kl_float']:.4f} top-1 {r['top1_float']:6.1%}" if r["kl_float"] is not None
                else "")
        print(f"  {r['group']:10s} at int8 KL {r['kl_8']:.4f} top-1 {r['top1_8']:6.1%}{left}", file=out())
    print(f"mixed-precision candidates (int16 elsewhere; compiled for {s['soc']}):", file=out())
    for c in s["candidates"]:
        npu = "compiles fully" if c["fully_offloaded"] else "does NOT compile fully"
        print(f"  {c['name']:45s} int8 FC weights {c['int8_weight_share']:6.1%}  ppl x{c['perplexity_ratio']:.3f}  "
              f"KL {c['kl']:.4f}  top-1 {c['top1_agreement']:.1%}  {npu}", file=out())
    if s["skipped"]:
        print(f"  not built (after each axis's first candidate over the tolerance; --full-search builds them): "
              f"{', '.join(s['skipped'])}", file=out())
    if s["chosen"]:
        how = "within" if s["chosen_within_tolerance"] else "NONE within"
        print(f"chosen: {s['chosen']} ({how} perplexity x{s['tolerance']}); recipe: {a.dir}/recipes/{s['chosen']}.json",
              file=out())
    else:
        print("no candidate with int8 activations compiles fully; nothing chosen", file=out())
    print(f"analysis took {res['seconds']:.0f} s; wrote {a.dir}/analysis.json", file=out())
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    found = api.check_model(a.model, a.target)
    if a.json:
        print(json.dumps({"model": a.model, "violations": [v.as_dict() for v in found]}, indent=2), file=out())
    else:
        for v in found:
            print(v.line(), file=out())
        rules = "LiteRT kernel and QNN HTP rules" if a.target == "qnn" else "LiteRT kernel rules"
        print(f"{a.model}: {len(found)} violation(s) of {rules}" if found else f"{a.model}: OK ({rules})", file=out())
    return 1 if found else 0


def cmd_compile(a: argparse.Namespace) -> int:
    from quantlab.compile.compiler import CompileFailed
    from quantlab.compile.socs import resolve_soc

    socs = [resolve_soc(s) for s in a.soc]  # every name checked before the first compile
    if a.out and len(socs) > 1:
        raise UserError("--out names one file; give one --soc, or leave --out out to name files per SoC")
    failed = 0
    for soc in socs:
        try:
            res = api.compile_model(a.model, [soc], a.out, a.overwrite, not a.no_weight_sharing, a.opt_level)[0]
        except CompileFailed as exc:
            failed += 1
            print(f"{exc.soc}: FAILED — the compiler said:", file=out())
            for line in exc.errors[:12] or [exc.log_tail]:
                print(f"  {line}", file=out())
            continue
        print(f"{res.soc}: {res.path.name}  {res.bytes / 1e6:.1f} MB ({res.bytes / res.input_bytes:.2f}x the input), "
              f"{res.seconds:.0f} s, peak RSS {res.peak_rss_mb / 1e3:.1f} GB, weight sharing "
              f"{'on' if res.weight_sharing else 'off'}", file=out())
        for sig, c in res.coverage.items():
            print(f"  {sig:12s} {c['ops_offloaded']} / {c['ops_total']} ops offloaded to the NPU, "
                  f"{c['partitions']} partition(s)", file=out())
        for r in res.rejected:
            print(f"  on CPU: {r.signature} op {r.op_index} {r.op} ({' x '.join(r.qnn_io)}): {r.reason} "
                  f"[QNN error {r.qnn_error}]", file=out())
    return 1 if failed else 0


def cmd_run(a: argparse.Namespace) -> int:
    res = api.run_lab(
        a.model, a.out, _schemes(a.schemes), log_file=Path(a.out) / "quantlab.log", verbose=a.verbose,
        socs=tuple(a.soc or ["SM8750"]), calib_texts=tuple(Path(t) for t in a.calib_text or ()),
        eval_text=Path(a.eval_text) if a.eval_text else None, prefill_len=a.prefill_len, cache_len=a.cache_len,
        calib_windows=a.calib_windows, eval_tokens=a.eval_tokens, overwrite=a.overwrite, analyze=not a.no_analyze,
        tolerance=a.tolerance, search_soc=a.search_soc, full_search=a.full_search,
        search_opt_level=a.search_opt_level, smooth_alpha=a.smooth,
        per_op=not a.no_per_op, embedder=a.embedder, rotate=a.rotate, hadamard=a.hadamard, bundles=not a.no_bundle,
        npu_sim=a.npu_sim, npu_sim_positions=a.npu_sim_positions, jobs=a.jobs,
        ray_address=a.ray_address)
    print(f"lab finished in {res['seconds']:.0f} s: {res['out']}/report.md, {res['out']}/report.html", file=out())
    for stage, t in res["timings"].items():
        print(f"  {stage:10s} {t['seconds']:7.1f} s  ({t['ran']} run, {t['skipped']} unchanged)", file=out())
    return 0


def cmd_bundle(a: argparse.Namespace) -> int:
    for soc in a.soc or [None]:
        rec = api.build_bundle(a.dir, a.variant, soc, a.overwrite)
        print(f"{rec.path}  {rec.bytes / 1e6:.1f} MB (main {rec.source}, embedder {rec.embedder}); "
              f"run `litert-lm-peek --litertlm_file {Path(a.dir) / rec.path}` to list its sections", file=out())
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    lab_args = [*(["--no-analyze"] if a.no_analyze else []), *(["--no-bundle"] if a.no_bundle else []),
                *(["--prefill-len", str(a.prefill_len)] if a.prefill_len else []),
                *(["--cache-len", str(a.cache_len)] if a.cache_len else []),
                *(["--eval-tokens", str(a.eval_tokens)] if a.eval_tokens else []),
                *(["--no-per-op"] if a.no_per_op else [])]
    res = api.run_sweep(_schemes(a.models), _schemes(a.schemes) or list(DEFAULT_SCHEMES), a.soc or ["SM8750"],
                        a.out, a.ray_address, lab_args, log=lambda s: print(s, file=err(), flush=True))
    failed = [lab for lab in res["labs"] if lab["returncode"] != 0]
    print(f"sweep of {len(res['labs'])} lab(s): {res['report']}, {res['html']}"
          + (f"; {len(failed)} failed: " + ", ".join(lab["model"] for lab in failed) if failed else ""), file=out())
    return 1 if failed else 0


def cmd_report(a: argparse.Namespace) -> int:
    md, page = api.write_report(a.dir)
    print(f"wrote {md} and {page}", file=out())
    return 0
