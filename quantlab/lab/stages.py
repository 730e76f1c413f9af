"""The stages of `quantlab run` as data: what each reads, what must come before it, and the steps it runs.

A `Stage` declares the RunConfig fields its steps read (`reads`) and the stages before it (`after`; the order is
checked before anything runs). Each stage builds `Step`s; a step names the upstream steps whose outputs it reads
(`needs`) and what else tells it apart (`parts`: a scheme's recipe digest, a SoC). The lab derives every cache key from
exactly those — the declared fields' values (files by content), the needed steps' keys, the parts — so a step cannot
read an undeclared option: the config a step builder sees raises on any field its stage did not declare.

`each` names a field whose items make one step apiece (quantize: one per scheme): the field goes into each step's
key through its item, not as a whole, so adding a scheme leaves the others' steps as they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Stage:
    name: str
    after: tuple[str, ...]
    reads: tuple[str, ...] = ()
    each: str | None = None
    version: int = 1  # bumped when what the stage makes, or how, changes: older results are redone
    doc: str = ""


@dataclass
class Step:
    name: str  # "<stage>" or "<stage>:<item>..."
    run: Callable[[], Any]  # runs in its own process (lab/isolate.py); returns a small JSON-able result
    needs: tuple[str, ...] = ()  # a step of the same stage named here runs before it (the others side by side)
    parts: tuple = ()
    outputs: tuple[Path, ...] = ()  # files that must still exist for the step to count as done
    record: Callable[[Any], None] | None = None  # puts the result into the manifest (in the lab's process)
    # The memory it peaks at on the bundled 270M (the lab scales it to the model, and prefers the step's own last
    # measured peak), so that steps side by side fit the machine (scheduler.py); `base_gb` more that does not grow
    # with the model (a runtime, a text's logits).
    memory_gb: float = 2.0
    base_gb: float = 0.0
    # The seconds it typically takes on the bundled 270M where that differs from its stage's figure (eta.TYPICAL_S),
    # scaled to the model like it: for the ETA, and so that the longest chains of work start first (scheduler.py).
    typical_s: float | None = None
    exclusive: bool = False  # runs alone on every core (a speed measurement)


# Evaluate 4: the reference, metrics and speed as before, stored as typed Metrics (format 2 manifests).
STAGES: tuple[Stage, ...] = (
    Stage("export", (), ("model", "prefill_len", "cache_len", "smooth_alpha", "rotate", "hadamard", "calib_texts"),
          version=2, doc="FP32 embedder and main in the NPU layout, tokenizer, manifest"),
    Stage("calibrate", ("export",), ("calib_texts", "calib_windows"), version=2,
          doc="real text through the FP32 pipeline; ranges of every tensor"),
    Stage("analyze", ("calibrate",), ("analyze", "tolerance", "analyze_tokens", "search_soc", "full_search",
                                         "search_opt_level"),
          version=3,
          doc="sensitivity per op group and the mixed-precision search (every candidate compiled)"),
    Stage("quantize", ("calibrate", "analyze"), ("schemes", "embedder"), each="schemes", version=2,
          doc="each scheme (and the search's choice) with ai-edge-quantizer"),
    Stage("check", ("quantize",), (), version=2, doc="LiteRT kernel rules on every main"),
    Stage("compile", ("quantize",), ("socs",), each="socs", version=2,
          doc="QNN HTP AOT for each quantized main and SoC"),
    Stage("bundle", ("compile",), ("bundles",), doc="a .litertlm per variant and compiled main, for LiteRT-LM"),
    Stage("evaluate", ("quantize", "bundle"), ("eval_text", "eval_tokens", "decode_steps", "sample_prompt", "per_op"),
          version=4, doc="perplexity, KL, top-1 vs FP32, CPU speed, memory, a sample; each bundle through LiteRT-LM"),
    Stage("npu_sim", ("compile",), ("npu_sim", "npu_sim_positions", "socs", "eval_text"), each="socs",
          doc="opt-in: compiled mains on the QNN HTP simulator vs the CPU interpreter and FP32"),
    Stage("report", ("evaluate", "compile", "check"), doc="report.md and report.html"),
)
BY_NAME = {s.name: s for s in STAGES}


def validate_order(stages: tuple[Stage, ...] = STAGES) -> None:
    """Every stage must come after the stages it needs; checked before anything runs."""
    seen: set[str] = set()
    for stage in stages:
        missing = [a for a in stage.after if a not in seen]
        if missing:
            order = " → ".join(s.name for s in stages)
            raise ValueError(f"stage {stage.name!r} needs {', '.join(missing)} before it; order given: {order}")
        seen.add(stage.name)


class ConfigView:
    """The fields of a RunConfig that one stage declared (plus `out`, where it writes); any other field raises, so an
    undeclared input is a bug found at once, not a stale cache."""

    def __init__(self, cfg: Any, stage: Stage) -> None:
        self._cfg, self._stage = cfg, stage

    def __getattr__(self, name: str) -> Any:
        if name == "out" or name in self._stage.reads:
            return getattr(self._cfg, name)
        raise AttributeError(f"stage {self._stage.name!r} reads RunConfig.{name} without declaring it in "
                             "quantlab/lab/stages.py (its cache key would miss it)")


@dataclass
class Plan:
    """What a run would do: per stage, each step's status (`unchanged`, `changed`: its own inputs differ, or
    `upstream`: a step it needs will run)."""

    steps: dict[str, dict[str, str]] = field(default_factory=dict)

    def stale_stages(self) -> set[str]:
        return {s for s, st in self.steps.items() if any(v != "unchanged" for v in st.values())}
