"""The lab's run state (DIR/.quantlab-run.json): for each finished step, the hash of its inputs and its duration.

A step whose input hash is unchanged and whose outputs still exist is skipped on a re-run; anything upstream that
changed changes the hash of everything downstream. The state is written after every step, atomically, so Ctrl-C or a
crash loses at most the step in progress (whose output, written to a temporary name, never appears half-written).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from quantlab.atomic import write_text

STATE_FILE = ".quantlab-run.json"
FORMAT_VERSION = 2  # 2: step keys from declared stage inputs (lab/stages.py)


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class RunState:
    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / STATE_FILE
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.steps: dict[str, dict] = data.get("steps", {}) if data.get("format_version") == FORMAT_VERSION else {}

    def done(self, step: str, key: str, outputs: list[Path]) -> bool:
        rec = self.steps.get(step)
        return bool(rec and rec["key"] == key and all(Path(p).exists() for p in outputs))

    def record(self, step: str, key: str, seconds: float, result: Any = None, rss_mb: float | None = None,
               where: dict | None = None, inputs: dict | None = None, cpu_s: float | None = None) -> None:
        """`where`: the Ray node and process a step ran in (lab/ray_steps.py); None when it ran on this machine.
        `inputs`: what the next run's ETA reads to tell, before building a stage, whether the step will run again
        (`fields`: the key of its stage's declared options, `needs`, `outputs` relative to the folder).
        `cpu_s`: the CPU seconds the step used (÷ `seconds`: the cores it kept busy; bench/lab_time_bench.py)."""
        self.steps[step] = {"key": key, "seconds": round(seconds, 2), "rss_mb": rss_mb, "result": result}
        if cpu_s is not None:
            self.steps[step]["cpu_s"] = round(cpu_s, 1)
        if where:
            self.steps[step]["where"] = where
        if inputs:
            self.steps[step]["inputs"] = inputs
        write_text(self.path, json.dumps({"format_version": FORMAT_VERSION, "steps": self.steps}, indent=1, default=str))

    def stage_totals(self) -> dict[str, dict]:
        """Per stage: seconds its current steps took when they ran, and the highest peak RSS of the processes they ran in
        (each step runs in its own, see isolate.py)."""
        out: dict[str, dict] = {}
        for step, rec in self.steps.items():
            t = out.setdefault(step.split(":")[0], {"seconds": 0.0, "steps": 0, "peak_rss_mb": None})
            t["seconds"] = round(t["seconds"] + rec["seconds"], 2)
            t["steps"] += 1
            if rec.get("rss_mb") is not None:
                t["peak_rss_mb"] = max(t["peak_rss_mb"] or 0, rec["rss_mb"])
        return out

    def result(self, step: str) -> Any:
        return self.steps.get(step, {}).get("result")
