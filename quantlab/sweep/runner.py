"""Run a sweep's labs as Ray tasks — a local Ray by default, or the cluster at `ray_address` — and merge them.

One task per model: its lab builds every scheme and compiles for every SoC (they share that model's export and
calibration). A task declares the memory its lab peaks at (measured: tiny 2 GB, 270M 12 GB, 1B shape 16 GB), so Ray
never places two labs that would not fit together on one machine; each lab runs as its own `quantlab run` process
(its console output in its folder's quantlab.log). On a cluster every node must see the sweep folder at the same path
(a shared filesystem) and have quantlab installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from quantlab.errors import UserError

PEAK_GB = {"tiny-random": 2, "tiny-random-w512": 2, "gemma3-270m": 12, "gemma3-1b-random": 16}
DEFAULT_PEAK_GB = 16


@dataclass(frozen=True)
class SweepConfig:
    """models: what `--model` takes; schemes and socs: as `quantlab run`'s; lab_args: further `quantlab run` options
    given to every lab (e.g. ["--no-analyze"]). Choose a cluster (`ray_address`) when the grid's labs do not fit one
    machine's memory side by side."""

    models: tuple[str, ...]
    schemes: tuple[str, ...]
    socs: tuple[str, ...]
    out: Path
    ray_address: str | None = None
    lab_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        from quantlab.compile.socs import resolve_soc
        from quantlab.models.registry import check_spec
        from quantlab.quantize.schemes import parse_all

        if not self.models:
            raise UserError("--models is empty; name at least one model")
        for m in self.models:
            check_spec(m)
        parse_all(self.schemes)
        object.__setattr__(self, "socs", tuple(resolve_soc(s) for s in self.socs))
        object.__setattr__(self, "out", Path(self.out))
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; pass a folder")
        names = [folder_name(m) for m in self.models]
        if len(set(names)) != len(names):
            raise UserError(f"models {', '.join(self.models)} would share a lab folder; give distinct models")

    def lab_dir(self, model: str) -> Path:
        return self.out / folder_name(model)

    def argv(self, model: str) -> list[str]:
        """The `quantlab run` arguments of one model's lab."""
        socs = [x for s in self.socs for x in ("--soc", s)]
        return ["run", "--model", model, "--out", str(self.lab_dir(model)), "--schemes", *self.schemes, *socs,
                *self.lab_args]


def folder_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name if os.sep in model else model)


def _run_lab(argv: list[str]) -> dict:
    """A Ray task: one lab in a fresh `quantlab run` process."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "quantlab.cli", *argv], capture_output=True, text=True)
    return {"argv": argv, "returncode": p.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "stderr_tail": p.stderr[-2000:], "node": os.uname().nodename}


def run_sweep(cfg: SweepConfig, log=print) -> list[dict]:
    """Every model's lab as a Ray task; returns each task's outcome (a lab that failed is reported, not fatal)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.ray_address:
        ray.init(address=cfg.ray_address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(_run_lab)
        pending = {}
        for m in cfg.models:
            gb = PEAK_GB.get(m, DEFAULT_PEAK_GB)
            ref = task.options(num_cpus=1, memory=gb * 2**30, name=f"lab {m}").remote(cfg.argv(m))
            pending[ref] = m
            log(f"[sweep] lab {m}: queued (declares {gb} GB)")
        results = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            res = ray.get(done[0])
            m = pending.pop(done[0])
            log(f"[sweep] lab {m}: {'done' if res['returncode'] == 0 else 'FAILED'} in {res['seconds']:.0f} s "
                f"on {res['node']}")
            results.append({**res, "model": m})
        return results
    finally:
        ray.shutdown()
