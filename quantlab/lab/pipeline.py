"""`quantlab run`: the stages of stages.py in their checked order, each step skipped when its inputs are unchanged.

A step's cache key is derived from its stage's declared RunConfig fields, the keys of the steps it needs and its own
parts (stages.py); the run state (state.py) holds the key each step last finished with. `plan()` says what a run
would do without doing it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from quantlab import artifacts, manifest
from quantlab.errors import UserError
from quantlab.lab import eta
from quantlab.lab import steps as stage_steps
from quantlab.lab.config import RunConfig
from quantlab.lab.scheduler import Forked, Resources, run_steps
from quantlab.lab.stages import BY_NAME, STAGES, ConfigView, Plan, Stage, Step, validate_order
from quantlab.lab.state import RunState, key_of


class Lab:
    def __init__(self, cfg: RunConfig, log: Callable[[str], None] = print) -> None:
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.state: RunState | None = None
        self.built: dict[str, Step] = {}  # every step built in this run, by name
        self.variants: list[str] = ["fp32"]
        self.timings: dict[str, dict] = {}
        self.resources = Resources.of(cfg.jobs)
        self.ray = None  # a RayRunner while `run` runs with --ray-address (lab/ray_steps.py)

    # ---- what step builders read
    @property
    def model_name(self) -> str | None:
        return (self.result("export") or {}).get("name")

    def result(self, step: str) -> Any:
        return self.state.result(step) if self.state else None

    def path(self, variant: str) -> Path:
        return self.out / artifacts.main_file(self.model_name, variant)

    @staticmethod
    def producer(variant: str) -> str:
        """The step that makes `variant`'s main."""
        return "export" if variant == "fp32" else f"quantize:{variant}"

    # ---- running
    def run(self) -> dict:
        """Run every stage; returns the seconds, per-stage timings and the folder."""
        t0 = time.perf_counter()
        if self.cfg.ray_address:
            from quantlab.lab.ray_steps import RayRunner

            with RayRunner(self.cfg.ray_address, self.log) as self.ray:  # connected before the first step
                self._walk(execute=True)
            self.ray = None
        else:
            self._walk(execute=True)
        self._report(t0)
        return {"seconds": time.perf_counter() - t0, "timings": self.timings, "out": str(self.out)}

    def plan(self) -> Plan:
        """What `run` would do now, step by step, without doing it (the folder must hold a finished run)."""
        return self._walk(execute=False)

    def _walk(self, execute: bool) -> Plan:
        validate_order(STAGES)
        self.state = self._prepare(execute)
        self._t0 = time.perf_counter()
        plan, stale = Plan(), set()
        work = [s for s in STAGES if s.name in stage_steps.BUILDERS]
        for i, stage in enumerate(work, 1):
            steps = stage_steps.BUILDERS[stage.name](self, ConfigView(self.cfg, stage))
            self.built.update((s.name, s) for s in steps)
            if stage.name == "quantize":
                self.variants = ["fp32", *[s.name.split(":", 1)[1] for s in steps
                                           if not s.name.startswith("quantize:embedder_")]]
            plan.steps[stage.name] = {}
            if execute:
                self._stage, self._todo = stage.name, self._to_run(stage, steps)
                self.log(f"[{i}/{len(STAGES)} {stage.name}] {len(self._todo)} of {len(steps)} step(s) to run · "
                         f"ETA {eta.clock(self._remaining())}")
            if not execute:
                for step in steps:
                    status = ("upstream" if any(n in stale for n in step.needs)
                              else "unchanged" if self._done(stage, step) else "changed")
                    plan.steps[stage.name][step.name] = status
                    if status != "unchanged":
                        stale.add(step.name)
                continue
            self._execute_stage(stage, steps)
        return plan

    def _prepare(self, execute: bool) -> RunState:
        out = self.out
        if execute:
            out.mkdir(parents=True, exist_ok=True)
        state = RunState(out)
        if self.cfg.overwrite and execute:
            state.steps = {}
        export = state.result("export")
        if export and export.get("model") != self.cfg.digest("model") and not self.cfg.overwrite:
            raise UserError(f"{out} holds a run of another model ({export.get('name')}); pass --overwrite or choose "
                            "another --out")
        return state

    def key(self, stage: Stage, step: Step) -> str:
        fields = {f: self.cfg.digest(f) for f in stage.reads if f != stage.each}
        needs = [self.state.steps.get(n, {}).get("key") for n in step.needs]
        return key_of(stage.name, stage.version, fields, needs, step.parts)

    def _done(self, stage: Stage, step: Step) -> bool:
        return self.state.done(step.name, self.key(stage, step), list(step.outputs))

    def _execute_stage(self, stage: Stage, steps: list[Step]) -> None:
        """Skipped steps record first (the manifest may have been rewritten upstream), in order; the rest run side by
        side where cores and memory allow (scheduler.py). Each step's result is recorded as it ends, so Ctrl-C or a
        failure keeps every finished step."""
        t = self.timings.setdefault(stage.name, {"seconds": 0.0, "ran": 0, "skipped": 0})
        todo = list(self._todo)  # _walk found them (_to_run)
        for step in steps:
            if step not in todo:
                t["skipped"] += 1
                if step.record is not None:
                    step.record(self.state.result(step.name))
        t0 = time.perf_counter()

        def done(step: Step, result: Any, peak_mb: float, secs: float, where: dict | None = None) -> None:
            if step.name == "export":
                result = {**result, "model": self.cfg.digest("model")}
            t["ran"] += 1
            self.state.record(step.name, self.key(stage, step), secs, result, rss_mb=round(peak_mb, 1), where=where)
            self._todo = [s for s in self._todo if s.name != step.name]
            self.log(f"  {step.name:44s} {secs:7.1f} s  peak {peak_mb / 1e3:5.1f} GB · elapsed "
                     f"{eta.clock(time.perf_counter() - self._t0)} · ETA {eta.clock(self._remaining())}")
            if step.record is not None:
                step.record(self.state.result(step.name))

        try:
            if self.ray is not None:
                run_steps(todo, self.ray.backend(self._memory_mb), done)
            else:
                run_steps(todo, Forked(self._resources(stage), self._memory_mb), done)
        finally:
            t["seconds"] += time.perf_counter() - t0

    def _resources(self, stage: Stage) -> Resources:
        """--jobs when given; else a stage marked side_by_side runs a step per core, the others one at a time."""
        if self.cfg.jobs is None and stage.side_by_side:
            return dataclasses.replace(self.resources, jobs=len(self.resources.cpus))
        return self.resources

    def _to_run(self, stage: Stage, steps: list[Step]) -> list[Step]:
        """The steps whose inputs changed, and those needing one of them in this stage (a step's key is taken when it
        ends, after what it needs has recorded its own)."""
        names = {s.name for s in steps if not self._done(stage, s)}
        while more := {s.name for s in steps if s.name not in names and any(n in names for n in s.needs)}:
            names |= more
        return [s for s in steps if s.name in names]

    def _memory_mb(self, step: Step) -> float:
        """What `step` declares it peaks at: its own last measured peak (+25 %) when this folder has one, else its
        builder's typical figure scaled to the model's size."""
        rec = self.state.steps.get(step.name) or {}
        if rec.get("rss_mb"):
            return rec["rss_mb"] * 1.25
        return step.memory_gb * 1e3 * self._scale()

    def _scale(self) -> float:
        fp32 = self.path("fp32") if self.model_name else None
        return eta.scale(self.cfg.model, fp32.stat().st_size if fp32 is not None and fp32.exists() else None)

    def _remaining(self) -> float:
        """Seconds the rest should take: the current stage's steps still to run (as long as they took last time, else
        typical), then the typical figure for every later stage (lab/eta.py)."""
        scale = self._scale()

        def guess(name: str) -> float:
            rec = self.state.steps.get(name)
            return rec["seconds"] if rec else eta.TYPICAL_S.get(name.split(":")[0], 10) * scale

        skip = {"report"} | ({"analyze"} if not self.cfg.analyze else set()) | (
            {"npu_sim"} if not self.cfg.npu_sim else set()) | ({"bundle"} if not self.cfg.bundles else set())
        names = [s.name for s in STAGES]
        later = [n for n in names[names.index(self._stage) + 1:] if n not in skip]
        n_schemes = len(self.cfg.schemes) + (1 if self.cfg.analyze else 0)

        def side_by_side(stage: str, seconds: float, steps: int) -> float:  # about what its steps at a time take
            jobs = len(self._resources(BY_NAME[stage]).slots())
            return seconds / max(1, min(jobs, steps))

        return side_by_side(self._stage, sum(guess(s.name) for s in self._todo), len(self._todo)) + sum(
            side_by_side(n, eta.TYPICAL_S.get(n, 10) * scale * k, k)
            for n in later for k in [eta.step_count(n, n_schemes, len(self.cfg.socs))])

    def _report(self, t0: float) -> None:
        from quantlab.report.render import write_report

        n = len(STAGES)
        self.log(f"[{n}/{n} report] elapsed {eta.clock(time.perf_counter() - t0)}")
        t = time.perf_counter()
        with manifest.edit(self.out) as m:
            # What the current artifacts cost to make (from when each step ran), and what this run did.
            totals = self.state.stage_totals()
            m.timings = {s: manifest.StageTiming(
                seconds=v["seconds"], steps=v["steps"], peak_rss_mb=v["peak_rss_mb"],
                ran=self.timings.get(s, {}).get("ran", 0), skipped=self.timings.get(s, {}).get("skipped", 0),
                wall_seconds=round(self.timings[s]["seconds"], 1) if self.timings.get(s, {}).get("ran") else None)
                for s, v in totals.items()}
            m.last_run_seconds = round(t - t0, 1)
        write_report(self.out)
        self.timings["report"] = {"seconds": time.perf_counter() - t, "ran": 1, "skipped": 0}
