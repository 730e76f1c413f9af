"""The `quantlab` command line: every sub-command, its options and their help (which says when to choose each)."""

from __future__ import annotations

import argparse

from quantlab.cli.commands import (cmd_analyze, cmd_bundle, cmd_calibrate, cmd_check, cmd_compile, cmd_eval,
                                   cmd_export, cmd_generate, cmd_quantize, cmd_report, cmd_run, cmd_sweep)
from quantlab.compile.levels import CHECK_LEVEL, SHIP_LEVEL

HADAMARD_HELP = ("block-Hadamard rotations folded around the fully-connected layers (same function; on by default), "
                 "for int8 activations on them: 270M a16_a8 on 90.7%% of the weights +18.1%% -> +4.9%% ppl; int16_w8 "
                 "KL 0.022 -> 0.021; --no-hadamard: the graph without them (~330 ops fewer per signature)")
ROTATE_HELP = ("spread the K largest residual channels by a rotation before export (same function; default 1: the "
               "270M's one massive channel; 0: none)")
PREFILL_HELP = ("tokens per prefill call (default 64: with the 1280-slot cache the prefill attention-mask ADD stays "
                "under the 1 MiB Qualcomm's HTP handles, LiteRT-LM #3508; 128 needs --cache-len 896 or less)")
DESCRIPTION = "Gemma3 to LiteRT for phones: export, calibrate, quantize, check, compile, bundle, measure."
VERBOSE_HELP = "show the libraries' own output too (by default it goes to the folder's quantlab.log only)"
FULL_SEARCH_HELP = ("build every search candidate; by default each axis (int8 activations, 4-bit weights) stops "
                    "after its first candidate over the tolerance, which on the 270M picks the same recipe and "
                    "skips 5 of 11 (~100 s each)")
SEARCH_LEVEL_HELP = ("QNN optimization level (O1, O2, O3) the search's candidates compile at (default O2: the same NPU "
                     "coverage as O3, 5-10x faster; the chosen recipe then compiles at O3 like every shipped main); "
                     "O3 keeps the candidates' compiled files for the compile stage")
MODEL_HELP = "gemma3-270m (bundled, real weights), tiny-random, gemma3-1b-random, an HF folder or a .gguf"


def build_parser() -> argparse.ArgumentParser:
    from quantlab.quantize.embedder import EMBEDDERS
    from quantlab.quantize.rounding import ROUNDINGS
    from quantlab.quantize.schemes import DEFAULT_SCHEMES, help_line
    schemes_help = help_line().replace("%", "%%")  # argparse formats help with %

    p = argparse.ArgumentParser(prog="quantlab", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="the whole lab: export → calibrate → analyze → quantize → check → compile → "
                                   "bundle → evaluate → report")
    r.add_argument("--model", default="gemma3-270m", help=MODEL_HELP)
    r.add_argument("--out", default="out", help="artifact folder (default ./out); re-running resumes it")
    r.add_argument("--schemes", "--scheme", action="append", nargs="+", default=None,
                   help=f"schemes, space- or comma-separated: {schemes_help}; searched names (a16_a8-lm_head) or "
                        "recipe .json files; default " + ",".join(DEFAULT_SCHEMES))
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
    r.add_argument("--full-search", action="store_true", help=FULL_SEARCH_HELP)
    r.add_argument("--search-opt-level", default=CHECK_LEVEL, help=SEARCH_LEVEL_HELP)
    r.add_argument("--no-per-op", action="store_true",
                   help="skip the per-tensor SNR analysis in evaluate (it holds every tensor of two mains: too big "
                        "for the 1B in 24 GB)")
    r.add_argument("--embedder", choices=list(EMBEDDERS), default="int8",
                   help="the embedder quantized mains ship with (default int8: 4x smaller, KL +0.002 on the 270M; "
                        "int4 halves it again but costs the 270M KL 0.02 -> 0.39, +47 %% perplexity)")
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
    r.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="steps of every stage (and the search's sensitivity rows) N side by side, each on cores of "
                        "its own, as memory allows (default: a step per core; 1: one at a time on every core)")
    r.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run every step as a Ray task that declares its memory: `local` (a Ray on this machine) or "
                        "host:port of a cluster whose nodes see --out at the same path (default: no Ray)")
    r.add_argument("--overwrite", action="store_true", help="redo everything, replacing what is in --out")
    r.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    r.set_defaults(func=cmd_run)

    sw = sub.add_parser("sweep", help="a grid of labs (models x schemes x SoCs) on Ray, merged into one report")
    sw.add_argument("--models", action="append", nargs="+", required=True,
                    help="models, space- or comma-separated (as --model of run takes them)")
    sw.add_argument("--schemes", "--scheme", action="append", nargs="+", default=None,
                    help="as run's (default " + ",".join(DEFAULT_SCHEMES) + ")")
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
    sw.set_defaults(func=cmd_sweep)

    rp = sub.add_parser("report", help="write report.md + report.html from DIR/manifest.json")
    rp.add_argument("dir")
    rp.set_defaults(func=cmd_report)

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
    e.set_defaults(func=cmd_export)

    g = sub.add_parser("generate", help="text from an artifact folder")
    g.add_argument("dir")
    g.add_argument("--variant", default="fp32", help="which main: fp32 (default), int8, int16_w8, ...")
    g.add_argument("--prompt", required=True)
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest (0 = all)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=None, help="CPU threads for LiteRT (default: all)")
    g.add_argument("--backend", choices=["cpu", "htp-sim"], default="cpu",
                   help="cpu: LiteRT's CPU interpreter (default); htp-sim: the main compiled for --soc on Qualcomm's "
                        "HTP simulator, token by token (what the NPU would write; slow: ~10-18 s per 270M token)")
    g.add_argument("--soc", default="SM8750", help="with --backend htp-sim: the SoC to compile for (default SM8750)")
    g.set_defaults(func=cmd_generate)

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
    c.add_argument("--head", choices=("host", "model"), default="host",
                   help="where decode's LM head runs for the logits' range: host (default; one matrix product per "
                        "window, 270M calibration 218 -> 181 s, the range within float32 rounding) or model (as "
                        "ai-edge-quantizer runs it; moving_average and all_tensors always do)")
    c.add_argument("--processes", type=int, default=None,
                   help="calibrate the windows side by side in up to N processes, a core each (default: as the cores "
                        "and memory allow; the same ranges either way; 270M 174 -> 113 s with 2); min_max ranges "
                        "without --hessians only")
    c.set_defaults(func=cmd_calibrate)

    q = sub.add_parser("quantize", help="PTQ of main with a scheme: " + schemes_help)
    q.add_argument("dir")
    q.add_argument("--scheme", "--schemes", action="append", nargs="+", default=None,
                   help="shipped schemes (int8, int16_w8, dynamic_int8), searched names (a16_a8-lm_head) or recipe "
                        ".json files (e.g. DIR/recipes/<chosen>.json); space- or comma-separated; default int16_w8")
    q.add_argument("--embedder", choices=list(EMBEDDERS), default="int8",
                   help="the embedder the main ships with: int8 table, per-row scales (default; 270M: 174 vs 671 MB, "
                        "KL +0.002), int4 (half again; 270M int16_w8 KL 0.02 -> 0.39, +47 %% perplexity) or fp32 "
                        "(to measure the main's own error alone)")
    q.add_argument("--rounding", choices=list(ROUNDINGS), default="nearest",
                   help="weight rounding: nearest (default), octav (per-channel clipping, for 4-bit weights; 270M "
                        "int16_w4 KL 2.03 -> 1.32), or gptq (ai-edge-quantizer's GPTQ with the Hessians of `calibrate "
                        "--hessians`; 270M int16_w8: top-1 91.4 -> 93.5 %%, KL 0.022 -> 0.023; int16_w4 KL 2.03 -> 1.06)")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=cmd_quantize)

    an = sub.add_parser("analyze", help="per-op-group sensitivity (8/16-bit/float) + mixed-precision search that "
                                        "must compile for the NPU; saves DIR/recipes/<chosen>.json")
    an.add_argument("dir")
    an.add_argument("--tolerance", type=float, default=1.05,
                    help="allowed perplexity ratio to fp32 on calibration-domain text (default 1.05 = +5 %%)")
    an.add_argument("--soc", default="SM8750", help="SoC every candidate must compile for (default SM8750)")
    an.add_argument("--tokens", type=int, default=256, help="tokens of calibration-domain text scored per candidate")
    an.add_argument("--full-search", action="store_true", help=FULL_SEARCH_HELP)
    an.add_argument("--opt-level", default=CHECK_LEVEL, help=SEARCH_LEVEL_HELP)
    an.add_argument("--float-column", action="store_true",
                    help="also measure each op group left float (what int16 on it costs; doubles the sensitivity time)")
    an.set_defaults(func=cmd_analyze)

    k = sub.add_parser("check", help="LiteRT kernel rules on any .tflite; exit 1 when violated")
    k.add_argument("model")
    k.add_argument("--target", choices=["litert", "qnn"], default="litert",
                   help="litert: LiteRT CPU kernel rules; qnn: also the Qualcomm HTP rules measured with the compiler")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_check)

    m = sub.add_parser("compile", help="Qualcomm NPU (QNN HTP) AOT compile; prints NPU coverage per signature")
    m.add_argument("model", help="a main .tflite (e.g. DIR/<name>_main_int8.tflite)")
    m.add_argument("--soc", action="append", required=True, help="SoC, e.g. SM8750 (repeat for several)")
    m.add_argument("--out", default=None, help="output file (default: <model>_aot_<soc>.tflite beside the model)")
    m.add_argument("--no-weight-sharing", action="store_true",
                   help="store weights once per signature (bigger; only to measure what sharing saves)")
    m.add_argument("--opt-level", default=SHIP_LEVEL,
                   help="QNN graph optimization level, O1/O2/O3: O3 (default) to ship; O2 compiles 5-10x faster "
                        "with the same NPU coverage, to check a main")
    m.add_argument("--overwrite", action="store_true")
    m.set_defaults(func=cmd_compile)

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
    v.set_defaults(func=cmd_eval)

    b = sub.add_parser("bundle", help="a .litertlm for a variant (compiled with --soc) that LiteRT-LM loads")
    b.add_argument("dir")
    b.add_argument("--variant", required=True, help="fp32, int16_w8, ... (see manifest.json)")
    b.add_argument("--soc", action="append", default=None, help="bundle the variant's compiled main for this SoC")
    b.add_argument("--overwrite", action="store_true")
    b.set_defaults(func=cmd_bundle)
    for name, sp in sub.choices.items():  # run has its own; sweep's labs each keep a log
        if name not in ("run", "sweep"):
            sp.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return p
