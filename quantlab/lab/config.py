"""The lab's options, frozen and validated before anything runs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from quantlab.compile.socs import resolve_soc
from quantlab.errors import UserError
from quantlab.quantize.recipes import DEFAULT_SCHEMES, SCHEMES


@dataclass(frozen=True)
class RunConfig:
    """Options of `quantlab run`.

    schemes: int8 and/or int16_w8 (or recipe .json files). socs: Snapdragon SoCs to compile for; empty skips the
    compile stage. eval_tokens: evaluation text scored (default one full cache window, so every position is covered).
    calib_windows: calibration windows of the cache length (2 cover every position twice; more narrows the ranges'
    sampling noise at a minute or so each on the 270M). analyze: run the mixed-precision search and build its chosen
    recipe as a third variant (tolerance: allowed perplexity ratio to fp32 on calibration-domain text;
    analyze_tokens: tokens scored per candidate). smooth_alpha: SmoothQuant scale migration before export (0: none).
    rotate: massive residual channels spread by a rotation before export (default 1; 0: none; see ExportConfig).
    hadamard: block-Hadamard rotations around the fully-connected layers (for int8 activations on them; ExportConfig).
    embedder: the embedder quantized mains ship with, `int8` (table at int8 per row: 4× smaller, KL +0.002 on the
    270M) or `fp32` (see quantlab/quantize/embedder.py).
    per_op: per-tensor SNR of each quantized variant in the evaluate stage; it keeps every tensor of the FP32 and the
    quantized main for one call, which the 1B shape cannot afford in 24 GB (turn it off there).
    """

    model: str = "gemma3-270m"
    out: Path = Path("out")
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    socs: tuple[str, ...] = ("SM8750",)
    calib_texts: tuple[Path, ...] = ()
    eval_text: Path | None = None
    prefill_len: int = 128
    cache_len: int = 1280
    calib_windows: int = 2
    eval_tokens: int | None = None
    decode_steps: int = 32
    sample_prompt: str = "The three most important things to know about quantization are"
    overwrite: bool = False
    analyze: bool = True
    tolerance: float = 1.05
    analyze_tokens: int = 256
    smooth_alpha: float = 0.0
    rotate: int = 1
    hadamard: bool = False
    per_op: bool = True
    embedder: str = "int8"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.schemes:
            raise UserError("--schemes is empty; choose from int8, int16_w8 or recipe .json files")
        for s in self.schemes:
            if s not in SCHEMES and not (s.endswith(".json") and Path(s).is_file()):
                raise UserError(f"unknown scheme {s!r}; choose from {', '.join(SCHEMES)} or an existing recipe .json")
        from quantlab.quantize.embedder import embedder_key

        embedder_key(self.embedder)  # an unknown choice is a UserError naming the choices
        object.__setattr__(self, "socs", tuple(resolve_soc(s) for s in self.socs))
        for p in (*self.calib_texts, *([self.eval_text] if self.eval_text else [])):
            if not Path(p).is_file():
                raise UserError(f"text file {p} does not exist; pass an existing .txt or .jsonl file")
            if not Path(p).read_text(errors="replace").strip():
                raise UserError(f"text file {p} is empty; pass a file with text in it")
        if self.tolerance < 1.0:
            raise UserError(f"--tolerance must be at least 1.0 (a perplexity ratio), got {self.tolerance}")
        if self.analyze_tokens < 2:
            raise UserError(f"analyze_tokens must be at least 2, got {self.analyze_tokens}")
        try:
            self.export_config()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if self.calib_windows < 1:
            raise UserError(f"--calib-windows must be at least 1, got {self.calib_windows}")
        if self.eval_tokens is not None and self.eval_tokens < 2:
            raise UserError(f"--eval-tokens must be at least 2, got {self.eval_tokens}")

    def export_config(self):
        """The ExportConfig these options ask for (raises ValueError naming the fix)."""
        from quantlab.layout import ExportConfig

        return ExportConfig(prefill_len=self.prefill_len, cache_len=self.cache_len, smooth_alpha=self.smooth_alpha,
                            rotate=self.rotate, hadamard=self.hadamard)


def text_digest(paths: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16] if paths else "default"
