"""The lab's options, frozen and validated before anything runs: every scheme parsed, every input file read."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantlab.compile.levels import CHECK_LEVEL, check_level
from quantlab.compile.socs import resolve_soc
from quantlab.errors import UserError
from quantlab.lab.state import STATE_FILE
from quantlab.quantize.embedder import check_choice
from quantlab.quantize.schemes import DEFAULT_SCHEMES, Scheme, parse_all
from quantlab.texts import load_texts, read_text


@dataclass(frozen=True)
class RunConfig:
    """Options of `quantlab run`.

    schemes: shipped names, searched names or recipe .json files (quantlab/quantize/schemes.py), parsed into
    `Scheme`s here. socs: Snapdragon SoCs to compile for; empty skips the compile stage. eval_tokens: evaluation text
    scored (default one full cache window, so every position is covered). calib_windows: calibration windows of the
    cache length (2 cover every position twice; more narrows the ranges' sampling noise at a minute or so each on the
    270M). analyze: run the mixed-precision search and build its chosen recipe as another variant (tolerance: allowed
    perplexity ratio to fp32 on calibration-domain text; analyze_tokens: tokens scored per candidate; search_soc: the
    SoC every candidate must compile for; full_search: also build the candidates after each axis's first one over the
    tolerance, for a fuller size × accuracy table; search_opt_level: QNN's optimization level for the candidates'
    compiles, O2 by default, see SearchConfig). smooth_alpha, rotate, hadamard: function-preserving transforms
    before export (see ExportConfig). bundles: a `.litertlm` per variant and compiled main (quantlab/bundle), each
    uncompiled one also scored through LiteRT-LM in the evaluate stage. npu_sim: each quantized main compiled for
    each SoC run on the QNN HTP simulator against the CPU and FP32 (opt-in: ~10 s per 270M decode call) at
    npu_sim_positions decode positions and one prefill chunk. embedder: the embedder quantized mains ship
    with, `int8` (table at int8 per row: 4× smaller, KL +0.002 on the 270M) or `fp32`. per_op: per-tensor SNR of each quantized variant in the evaluate stage;
    it keeps every tensor of the FP32 and the quantized main for one call, which the 1B shape cannot afford in 24 GB.
    jobs: steps of every stage (and the search's sensitivity rows) run side by side, each on cores of its own, as
    memory allows (lab/scheduler.py); default None: a step per core (270M on 2 cores: the short stages 542 → 296 s,
    the scoring 1,465 → 876 s, same results; docs/results/2026-12-03.md §7, §9). Choose 1 to give every step the
    whole machine (one at a time), e.g. when memory is short.
    ray_address: run every step as a Ray task instead (lab/ray_steps.py) — `local` for a Ray on this machine, or
    host:port of a cluster whose nodes all see `out` at the same path; choose it when the work outgrows one machine.
    jobs and ray_address change how long the lab takes, not what it makes.
    """

    model: str = "gemma3-270m"
    out: Path = Path("out")
    schemes: tuple[Scheme, ...] = ()
    socs: tuple[str, ...] = ("SM8750",)
    calib_texts: tuple[Path, ...] = ()
    eval_text: Path | None = None
    prefill_len: int = 64
    cache_len: int = 1280
    calib_windows: int = 2
    eval_tokens: int | None = None
    decode_steps: int = 32
    sample_prompt: str = "The three most important things to know about quantization are"
    overwrite: bool = False
    analyze: bool = True
    tolerance: float = 1.05
    analyze_tokens: int = 256
    search_soc: str = "SM8750"
    full_search: bool = False
    search_opt_level: str = CHECK_LEVEL
    smooth_alpha: float = 0.0
    rotate: int = 1
    hadamard: bool = True
    per_op: bool = True
    embedder: str = "int8"
    bundles: bool = True
    npu_sim: bool = False
    npu_sim_positions: int = 32
    jobs: int | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "schemes", parse_all(tuple(self.schemes) or DEFAULT_SCHEMES))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "socs", tuple(resolve_soc(s) for s in self.socs))
        object.__setattr__(self, "search_soc", resolve_soc(self.search_soc))
        object.__setattr__(self, "calib_texts", tuple(Path(p) for p in self.calib_texts))
        check_choice(self.embedder)
        check_level(self.search_opt_level, "--search-opt-level")
        if self.calib_texts:
            load_texts(list(self.calib_texts))  # existence, encoding, .jsonl lines: all before the first step
        if self.eval_text is not None:
            object.__setattr__(self, "eval_text", Path(self.eval_text))
            read_text(self.eval_text)
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; pass a folder (new, or a quantlab run folder to resume)")
        if (self.out.is_dir() and any(self.out.iterdir()) and not (self.out / STATE_FILE).is_file()
                and not self.overwrite):
            raise UserError(f"{self.out} exists and is not a quantlab run folder; pass --overwrite or choose another --out")
        _check_model(self.model)
        for name, low in (("tolerance", 1.0), ("analyze_tokens", 2), ("calib_windows", 1), ("decode_steps", 1),
                          ("npu_sim_positions", 1)):
            if getattr(self, name) < low:
                raise UserError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(self, name)}")
        if self.jobs is not None and self.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {self.jobs}")
        if self.ray_address is not None:
            from quantlab.lab.ray_steps import check_address

            check_address(self.ray_address)
        if self.eval_tokens is not None and self.eval_tokens < 2:
            raise UserError(f"--eval-tokens must be at least 2, got {self.eval_tokens}")
        try:
            self.export_config()
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def export_config(self):
        """The ExportConfig these options ask for (raises ValueError naming the fix)."""
        from quantlab.layout import ExportConfig

        return ExportConfig(prefill_len=self.prefill_len, cache_len=self.cache_len, smooth_alpha=self.smooth_alpha,
                            rotate=self.rotate, hadamard=self.hadamard)

    def digest(self, name: str) -> Any:
        """What field `name` contributes to a cache key: its value, with files by content and the model by identity."""
        value = getattr(self, name)
        if name == "model":
            p = Path(value)
            return [str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)] if p.exists() else value
        if name == "schemes":
            return [(s.name, s.digest) for s in value]
        if isinstance(value, Path) or (isinstance(value, tuple) and value and isinstance(value[0], Path)):
            paths = value if isinstance(value, tuple) else (value,)
            return hashlib.sha256(b"".join(Path(p).read_bytes() for p in paths)).hexdigest()[:16]
        return json.loads(json.dumps(value, default=str))

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


# Fields that change where or how the lab runs, not what it makes: in no stage's key.
NOT_INPUTS = frozenset({"out", "overwrite", "jobs", "ray_address"})


def _check_model(spec: str) -> None:
    """`--model` names something loadable: a named model, a Hugging Face folder whose config is a Gemma3 text model,
    or a readable Gemma3 .gguf. Reads only the config or the header (cheap)."""
    from quantlab.models.registry import check_spec

    check_spec(spec)
