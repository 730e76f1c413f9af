"""Run a sweep's labs on Ray — a local Ray by default, or the cluster at `ray_address` — and merge them.

One lab per model (its schemes and SoCs share that model's export and calibration), each a `quantlab run` process
started by a Ray task, given the cluster's address: the lab's own steps (export, calibrate, the search's rows,
quantize, compile, evaluate) are then Ray tasks of their own, each declaring the memory it peaks at (lab/ray_steps.py),
so the steps of every lab spread over the cluster's nodes and two that would not fit one node together never share
it. The lab's process itself only waits on its steps: its task declares no CPU and 1 GB. On a cluster every node
must see the sweep folder at the same path (a shared filesystem) and have quantlab installed.
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

LAB_PROCESS_GB = 1  # a lab whose steps are Ray tasks: its own process holds the manifest and waits


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
        object.__setattr__(self, "out", Path(self.out).resolve())  # the labs run in Ray workers' folders
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; pass a folder")
        if self.ray_address is not None:
            from quantlab.lab.ray_steps import check_address

            check_address(self.ray_address)
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
    import ray

    from quantlab.lab.ray_steps import LOCAL, connect

    connect(cfg.ray_address or LOCAL)
    cfg.out.mkdir(parents=True, exist_ok=True)
    try:
        local = cfg.ray_address in (None, LOCAL)  # the labs join the Ray just started
        address = ray.get_runtime_context().gcs_address if local else cfg.ray_address
        task = ray.remote(_run_lab)
        pending = {}
        for m in cfg.models:
            argv = [*cfg.argv(m), "--ray-address", address]
            ref = task.options(num_cpus=0, memory=LAB_PROCESS_GB * 2**30, name=f"lab {m}").remote(argv)
            pending[ref] = m
            log(f"[sweep] lab {m}: started, its steps as Ray tasks on {address}")
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
