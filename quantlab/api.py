"""quantlab's Python API: one function per command of the `quantlab` CLI, with the same options and defaults.

Bad input raises `quantlab.UserError` (the CLI's exit code 2), before any expensive step where it can be known.
Every function that writes into an artifact folder records what it made in the folder's manifest.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from quantlab.compile.levels import CHECK_LEVEL, SHIP_LEVEL


def run_lab(model: str = "gemma3-270m", out: str | Path = "out", schemes: Sequence[str] = (),
            log: Callable[[str], None] = print, log_file: str | Path | None = None, verbose: bool = False,
            **options) -> dict:
    """The whole lab: export → calibrate → analyze → quantize → check → compile → bundle → evaluate → report,
    resumable.

    Use it when you want every artifact and the evidence to choose between them; `options` are RunConfig's fields
    (quantlab/lab/config.py: socs, calib_texts, eval_text, prefill_len, cache_len, analyze, hadamard, ...). A second
    call with the same options redoes nothing; a changed option redoes exactly the steps that read it. With
    `log_file`, everything but quantlab's own lines goes to that file (unless `verbose`)."""
    from quantlab.console import quiet
    from quantlab.lab.config import RunConfig
    from quantlab.lab.pipeline import Lab

    cfg = RunConfig(model=model, out=Path(out), schemes=tuple(schemes), **options)  # all input checked first
    if log_file is None:
        return Lab(cfg, log=log).run()
    with quiet(Path(log_file), verbose) as say:
        return Lab(cfg, log=say).run()


def export_model(model: str, out: str | Path, prefill_len: int = 64, cache_len: int = 1280, rotate: int = 1,
                 hadamard: bool = True, smooth_alpha: float = 0.0, overwrite: bool = False):
    """FP32 embedder and main in the NPU layout, the tokenizer and manifest.json. Use it to start a folder by hand
    (then calibrate_model, quantize_model, ...); `run_lab` does it for you."""
    from quantlab.layout import ExportConfig
    from quantlab.models.registry import check_spec

    # Bad input is reported before the export libraries load (and print their import-time notices).
    check_spec(model)
    if Path(out).exists() and not Path(out).is_dir():
        from quantlab.errors import UserError

        raise UserError(f"--out {out} is a file; pass a folder (new, or an export folder with --overwrite)")
    config = _config(ExportConfig, prefill_len=prefill_len, cache_len=cache_len, smooth_alpha=smooth_alpha,
                     rotate=rotate, hadamard=hadamard)
    from quantlab.export import export_model as export
    from quantlab.models import load_model

    return export(load_model(model), Path(out), config, overwrite=overwrite)


def calibrate_model(folder: str | Path, texts: Sequence[str | Path] = (), windows: int = 2,
                    decode_stride: int = 1, hessians: bool = False, ranges: str = "min_max",
                    capture: str = "profiler", host_head: bool = True, processes: int | None = None) -> dict:
    """Real text through the folder's FP32 pipeline; saves calibration.json (and hessians.npz for GPTQ). Use your
    own `texts` (.txt/.jsonl files) when your users' text differs from English prose; the default is litert-torch's
    calibration prompts plus Python's documentation. `host_head=False` runs decode's LM head in the model (the
    logits' range exactly as ai-edge-quantizer computes it; 270M calibration 181 → 218 s). `processes`: at most that
    many windows calibrated side by side (None: as the cores and memory allow; the same ranges either way)."""
    from quantlab.calibration.capture import CapturePlan
    from quantlab.calibration.ranges import calibrate
    from quantlab.texts import default_calibration_texts, load_texts

    plan = _config(CapturePlan, windows=windows, decode_stride=decode_stride)
    loaded = load_texts([Path(t) for t in texts]) if texts else default_calibration_texts()
    return calibrate(Path(folder), loaded, plan, ranges=ranges, capture=capture, hessians=hessians,
                     host_head=host_head, processes=processes)


def quantize_model(folder: str | Path, scheme: str = "int16_w8", embedder: str = "int8", rounding: str = "nearest",
                   overwrite: bool = False):
    """One quantized main from the folder's calibration: a shipped scheme (int8, int16_w8, dynamic_int8), a searched
    name (a16_a8-lm_head) or a recipe .json. Choose int16_w8 for the NPU's accuracy, dynamic_int8 for the CPU."""
    from quantlab.quantize.quantizer import quantize

    return quantize(Path(folder), scheme, overwrite=overwrite, embedder=embedder, rounding=rounding)


def analyze_model(folder: str | Path, tolerance: float = 1.05, soc: str = "SM8750", tokens: int = 256,
                  float_column: bool = False, exhaustive: bool = False, opt_level: str = CHECK_LEVEL) -> dict:
    """Sensitivity of each op group and the mixed-precision search (every candidate compiled for `soc`, at QNN's
    `opt_level`: see SearchConfig); saves analysis.json and recipes/<chosen>.json. Use it to find how much of the model
    can take int8 activations."""
    from quantlab.analyze.analysis import analyze
    from quantlab.analyze.search import SearchConfig
    from quantlab.compile.socs import resolve_soc
    from quantlab.errors import UserError

    if tokens < 2:
        raise UserError(f"--tokens must be at least 2, got {tokens}")
    cfg = _config(SearchConfig, tolerance=tolerance, soc=resolve_soc(soc), exhaustive=exhaustive,
                  compile_level=opt_level)
    return analyze(Path(folder), cfg, tokens=tokens, float_column=float_column)


def check_model(model: str | Path, target: str = "litert") -> list:
    """LiteRT kernel rules (and with target='qnn' the HTP rules the compiler enforced) on any .tflite; returns the
    violations (empty: clean). Use it before compiling or shipping a model made elsewhere."""
    from quantlab.check.litert_rules import check_litert
    from quantlab.check.qnn_rules import check_qnn

    found = check_litert(Path(model))
    return found + check_qnn(Path(model)) if target == "qnn" else found


def compile_model(model: str | Path, socs: Sequence[str] = ("SM8750",), out: str | Path | None = None,
                  overwrite: bool = False, weight_sharing: bool = True, opt_level: str = SHIP_LEVEL) -> list:
    """QNN HTP AOT compile of a main for each SoC; returns the results (ops offloaded per signature, the compiler's
    reason for every op left on the CPU). Raises CompileFailed with the compiler's messages when nothing compiles.
    opt_level: QNN's graph optimization level, O3 (what ships) unless only the coverage is wanted (O2, ~8x faster)."""
    from quantlab.compile.stage import compile_for_socs

    return compile_for_socs(Path(model), list(socs), Path(out) if out else None, overwrite, weight_sharing, opt_level)


def evaluate_model(folder: str | Path, text: str, variant: str = "fp32", reference: str | None = None,
                   max_tokens: int | None = None, decode_steps: int = 32, threads: int | None = None,
                   runtime: str = "quantlab"):
    """Perplexity of `variant` on `text`, KL / top-1 against `reference` ('fp32' to measure quantization, 'torch'
    to measure the export), CPU speed and memory; returns a manifest.Metrics record. runtime='litert-lm' scores the
    variant's `.litertlm` bundle through Google's LiteRT-LM instead (perplexity and per-position figures only: its API
    returns no distributions)."""
    from quantlab.errors import UserError

    if runtime == "litert-lm":
        from quantlab.evaluate.litert_lm_eval import evaluate_litert_lm

        if reference is not None:
            raise UserError("--reference needs whole distributions, which LiteRT-LM's API does not return; drop it "
                            "with --runtime litert-lm")
        return evaluate_litert_lm(Path(folder), text, variant, max_tokens)
    if runtime != "quantlab":
        raise UserError(f"unknown runtime {runtime!r}; choose quantlab or litert-lm")
    from quantlab.evaluate.evaluator import evaluate

    return evaluate(Path(folder), text, variant, reference, max_tokens, decode_steps, threads)


def simulate_npu(folder: str | Path, variant: str, soc: str = "SM8750", text: str | None = None,
                 positions: int = 32, chunk: int = 1) -> dict:
    """What the NPU computes: `variant` compiled for `soc` (without weight sharing) on the QNN HTP simulator, against
    the CPU interpreter and FP32 on `positions` decode positions and prefill chunk `chunk` of `text` (default: the
    evaluation text). Slow (~10 s per 270M decode call): a spot check, not a perplexity run."""
    from quantlab.compile.socs import resolve_soc
    from quantlab.errors import UserError
    from quantlab.evaluate.npu_sim import npu_agreement
    from quantlab.texts import default_eval_text

    _check_sim_variant(variant)
    if positions < 1 or chunk < 0:
        raise UserError(f"--sim-positions must be at least 1 and --sim-chunk at least 0, got {positions}, {chunk}")
    return npu_agreement(Path(folder), variant, resolve_soc(soc), text or default_eval_text(), positions, chunk)


def build_bundle(folder: str | Path, variant: str, soc: str | None = None, overwrite: bool = False):
    """A `.litertlm` of `variant` (its compiled copy for `soc`) that Google's LiteRT-LM loads: main, embedder, aux
    model, tokenizer, LlmMetadata. Use it to hand the phone what it runs; returns the bundle's manifest record."""
    from quantlab.bundle.builder import build_bundle as build
    from quantlab.compile.socs import resolve_soc

    return build(Path(folder), variant, resolve_soc(soc) if soc else None, overwrite)


def generate_text(folder: str | Path, prompt: str, variant: str = "fp32", max_new_tokens: int = 32,
                  temperature: float = 0.0, top_k: int = 0, seed: int = 0, threads: int | None = None,
                  backend: str = "cpu", soc: str = "SM8750"):
    """Text from any variant of a folder through quantlab's host runtime (greedy by default; returns a Generation
    with the text, tokens and speeds). backend "cpu": LiteRT's CPU interpreter runs main; "htp-sim": main compiled
    for `soc` runs on Qualcomm's HTP simulator (what the NPU would write; ~10-18 s per 270M token). A simulator
    failure raises runtime.htp_sim.SimCrash naming the graph and the SoC."""
    from quantlab.errors import UserError
    from quantlab.runtime.sampling import SamplerConfig
    from quantlab.runtime.session import ArtifactSet, generate

    sampler = _config(SamplerConfig, temperature=temperature, top_k=top_k, seed=seed)
    if max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if backend not in ("cpu", "htp-sim"):
        raise UserError(f"--backend must be cpu or htp-sim, got {backend!r}")
    if backend == "cpu":
        return generate(ArtifactSet(Path(folder), variant, threads), prompt, max_new_tokens, sampler)
    from quantlab import layout
    from quantlab.compile.socs import resolve_soc
    from quantlab.evaluate.npu_sim import sim_copy
    from quantlab.runtime.sim_server import SimMain

    _check_sim_variant(variant)
    soc = resolve_soc(soc)
    arts = ArtifactSet(Path(folder), variant, threads)
    with SimMain(sim_copy(arts, soc), [arts.prefill_sig, layout.DECODE], soc) as main:
        g = generate(arts, prompt, max_new_tokens, sampler, main)
    g.backend = f"htp-sim {soc}"
    return g


def write_report(folder: str | Path) -> tuple[Path, Path]:
    """report.md and report.html from the folder's manifest: the verdict first, then every table and plot."""
    from quantlab.report.render import write_report as write

    return write(Path(folder))


def run_sweep(models: Sequence[str], schemes: Sequence[str], socs: Sequence[str], out: str | Path,
              ray_address: str | None = None, lab_args: Sequence[str] = (), log: Callable[[str], None] = print) -> dict:
    """A grid of labs — one per model, each with every scheme and SoC — as Ray tasks (a local Ray, or the cluster at
    `ray_address`), merged into out/sweep.md, sweep.html and sweep.json: one table, the Pareto front across models and
    SoCs, NPU coverage per SoC. Use it to compare models and SoCs side by side; `lab_args` go to every `quantlab run`."""
    from quantlab.sweep.report import write_sweep_report
    from quantlab.sweep.runner import SweepConfig, run_sweep as run

    cfg = SweepConfig(tuple(models), tuple(schemes), tuple(socs), Path(out), ray_address, tuple(lab_args))
    labs = run(cfg, log)
    md, page = write_sweep_report(cfg.out, labs)
    return {"labs": labs, "report": str(md), "html": str(page)}


def _config(cls, **kwargs):
    """Build a frozen config; its ValueError (which names the fix) becomes a UserError."""
    from quantlab.errors import UserError

    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _check_sim_variant(variant: str) -> None:
    from quantlab.errors import UserError

    if variant == "fp32":
        raise UserError("the simulator runs quantized mains; pass --variant int8, int16_w8 or another")
