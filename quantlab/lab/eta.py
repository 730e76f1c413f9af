"""How long the rest of a run will take: what each remaining step took last time, else a typical figure.

Typical seconds per step were measured on the bundled Gemma3-270M on this project's 2-core machine; other models scale
by the size of their FP32 main (known after export; before it, by name).
"""

from __future__ import annotations

TYPICAL_S = {"export": 160, "calibrate": 200, "analyze": 900, "quantize": 10, "check": 3, "compile": 50,
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
