"""How long the rest of a run will take: what each remaining step took last time, else a typical figure.

A later stage whose steps the folder has recorded counts only those that will run again: a step whose stage options,
or a step it needs, changed, or whose output is gone (a re-run of the short stages is not told the scoring's 25
minutes when its keys are unchanged). A stage never recorded counts its typical figure per step.

Typical seconds per step were measured on the bundled Gemma3-270M on this project's 2-core machine; other models scale
by the size of their FP32 main (known after export; before it, by name).
"""

from __future__ import annotations

from typing import Callable

# (export, calibrate, analyze: between the 270M's 137, 113 and 408 s (2026-12-07 §9) and the 1B shape's per
# 270M-size unit, 305, 586 and 1,069 s ÷ 3.7 = 82, 158, 289 (§8); the figures before made a 27-min default run's
# first ETA 35 min.
# compile: the 270M's four O3 compiles took 61-111 s, the 1B shape's 182-396 s ÷ 3.7 = 49-107)
TYPICAL_S = {"export": 140, "calibrate": 140, "analyze": 420, "quantize": 10, "check": 3, "compile": 85,
             "bundle": 40, "evaluate": 110, "npu_sim": 400}
REFERENCE_BYTES = 1.074e9  # the 270M's FP32 main
BY_NAME = {"tiny-random": 0.03, "tiny-random-w512": 0.03, "gemma3-1b-random": 3.7}


def scale(model: str, fp32_bytes: int | None) -> float:
    return fp32_bytes / REFERENCE_BYTES if fp32_bytes else BY_NAME.get(model, 1.0)


def step_count(stage: str, n_schemes: int, n_socs: int) -> int:
    """Steps a stage not yet built will have (quantize: the schemes, the search's choice and the embedder)."""
    variants = n_schemes + 1
    return {"quantize": n_schemes + 1, "check": variants, "compile": n_schemes * n_socs,
            "bundle": variants + n_schemes * n_socs, "evaluate": 2 * variants}.get(stage, 1)


def clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def new_variant_steps(stage: str, n_new: int, n_socs: int) -> int:
    """Steps a recorded stage gains for `n_new` schemes it has not made yet."""
    return {"quantize": n_new, "check": n_new, "compile": n_new * n_socs, "bundle": n_new * (1 + n_socs),
            "evaluate": 2 * n_new}.get(stage, 0)


def rerun(records: dict[str, dict], fields: str, changed: set[str], exists: Callable[[str], bool]) -> set[str] | None:
    """Which of a stage's recorded steps will run again: their stage options' key is not `fields`, a step they need is
    in `changed` (whose keys this run changes; a step of the same stage included), or an output is gone. None when a
    step was recorded without its inputs (by older code): the caller then counts the stage's typical figure."""
    if any("inputs" not in r for r in records.values()):
        return None
    redo: set[str] = set()
    while more := {s for s, r in records.items() if s not in redo and (
            r["inputs"]["fields"] != fields or (changed | redo) & set(r["inputs"]["needs"])
            or not all(exists(p) for p in r["inputs"]["outputs"]))}:
        redo |= more
    return redo
