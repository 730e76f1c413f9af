"""`quantlab run`: the stages of stages.py in their checked order, each step skipped when its inputs are unchanged.

A step's cache key is derived from its stage's declared RunConfig fields, the keys of the steps it needs and its own
parts (stages.py); the run state (state.py) holds the key each step last finished with. `plan()` says what a run
would do without doing it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from quantlab import artifacts, manifest
from quantlab.errors import UserError
from quantlab.lab import eta
from quantlab.lab import steps as stage_steps
from quantlab.lab.config import RunConfig
from quantlab.lab.heartbeat import Heartbeat
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
        self._changed: set[str] = set()  # steps whose keys this run changes (the ETA's later stages read it)
        self._beat = Heartbeat(self.out, log)  # lines from the steps that run long (heartbeat.py)
        self._running: dict[str, float] = {}  # step → when it started (perf_counter), as of the last tick

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
                self._note_changes(stage, self._todo)
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
        needs = [self.state.steps.get(n, {}).get("key") for n in step.needs]
        return key_of(stage.name, stage.version, self._fields(stage), needs, step.parts)

    def _fields(self, stage: Stage) -> dict[str, str]:
        return {f: self.cfg.digest(f) for f in stage.reads if f != stage.each}

    def _fields_key(self, stage: Stage) -> str:
        """The key of `stage`'s declared options alone: what a recorded step's `inputs` keep, and the ETA compares."""
        return key_of(stage.name, stage.version, self._fields(stage))

    def _inputs(self, stage: Stage, step: Step) -> dict:
        """What the state keeps of a step's inputs, for a later run's ETA (eta.rerun)."""
        outs = [str(p.relative_to(self.out) if p.is_relative_to(self.out) else p) for p in map(Path, step.outputs)]
        return {"fields": self._fields_key(stage), "needs": list(step.needs), "outputs": outs}

    def _note_changes(self, stage: Stage, todo: list[Step]) -> None:
        """Add the steps of `todo` whose key this run changes: new, other inputs, or a step they need changed (a step
        re-run only because its output was gone keeps its key, so what needs it is not redone)."""
        for step in todo:  # in build order: what a step needs in its own stage comes before it
            rec = self.state.steps.get(step.name)
            if rec is None or rec["key"] != self.key(stage, step) or self._changed & set(step.needs):
                self._changed.add(step.name)

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
            self._beat.ended(step.name)
            self._running.pop(step.name, None)
            if step.name == "export":
                result = {**result, "model": self.cfg.digest("model")}
            t["ran"] += 1
            cpu = (where or {}).pop("cpu_s", None)
            self.state.record(step.name, self.key(stage, step), secs, result, rss_mb=round(peak_mb, 1), where=where,
                              inputs=self._inputs(stage, step), cpu_s=cpu)
            self._todo = [s for s in self._todo if s.name != step.name]
            self.log(f"  {step.name:44s} {secs:7.1f} s  peak {peak_mb / 1e3:5.1f} GB · {self._elapsed_eta()}")
            if step.record is not None:
                step.record(self.state.result(step.name))

        def tick(running: list[tuple[Step, float]]) -> None:
            self._running = {s.name: t for s, t in running}
            self._beat.tick(running, self._elapsed_eta)

        if self.ray is not None:
            backend = self.ray.backend(self._memory_mb)
        else:
            backend = Forked(self.resources, self._memory_mb)
        try:
            run_steps([self._beat.wrap(s) for s in todo], backend, done, tick, seconds=self._seconds)
        finally:
            t["seconds"] += time.perf_counter() - t0
            self._running = {}
            self._beat.tidy()

    def _elapsed_eta(self) -> str:
        return f"elapsed {eta.clock(time.perf_counter() - self._t0)} · ETA {eta.clock(self._remaining())}"

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
        return (step.base_gb + step.memory_gb * self._scale()) * 1e3

    def _seconds(self, step: Step) -> float:
        """What `step` should take: as long as it took last time, else its typical figure scaled to the model."""
        rec = self.state.steps.get(step.name)
        if rec:
            return rec["seconds"]
        typical = step.typical_s if step.typical_s is not None else eta.TYPICAL_S.get(step.name.split(":")[0], 10)
        return typical * self._scale()

    def _scale(self) -> float:
        fp32 = self.path("fp32") if self.model_name else None
        return eta.scale(self.cfg.model, fp32.stat().st_size if fp32 is not None and fp32.exists() else None)

    def _remaining(self) -> float:
        """Seconds the rest should take: the current stage's steps still to run (as long as they took last time, else
        typical), then the later stages (_later_seconds)."""
        def guess(step: Step) -> float:
            typical = self._seconds(step)
            if step.name not in self._running:
                return typical
            progress = self._beat.progress(step.name)  # a running step: what it has left
            left = progress.left(time.time()) if progress is not None else None
            return max(typical - (time.perf_counter() - self._running[step.name]), left or 0.0)

        return self._at_a_time(sum(map(guess, self._todo)), len(self._todo)) + \
            self._later_seconds(self._stage, set(self._changed))

    def _later_seconds(self, after: str, changed: set[str]) -> float:
        """Seconds of the stages after `after`: a recorded stage's steps that will run again (eta.rerun, given the
        steps whose keys change, `changed`) at their last time, plus typical figures for schemes it has not made; a
        stage never recorded at its typical figure per step."""
        scale, socs = self._scale(), len(self.cfg.socs)
        skip = {"report"} | ({"analyze"} if not self.cfg.analyze else set()) | (
            {"npu_sim"} if not self.cfg.npu_sim else set()) | ({"bundle"} if not self.cfg.bundles else set())
        names = [s.name for s in STAGES]
        n_schemes = len(self.cfg.schemes) + (1 if self.cfg.analyze else 0)
        new = [s for s in self.cfg.schemes if f"quantize:{s.name}" not in self.state.steps]
        total = 0.0
        for n in (n for n in names[names.index(after) + 1:] if n not in skip):
            typical = eta.TYPICAL_S.get(n, 10) * scale
            recs = {s: r for s, r in self.state.steps.items() if s.split(":")[0] == n}
            redo = eta.rerun(recs, self._fields_key(BY_NAME[n]), changed,
                             lambda p: (self.out / p).exists()) if recs else None
            if redo is None:
                k = eta.step_count(n, n_schemes, socs)
                total += self._at_a_time(typical * k, k)
                continue
            changed |= redo
            k = eta.new_variant_steps(n, len(new), socs)
            total += self._at_a_time(sum(recs[s]["seconds"] for s in redo) + typical * k, len(redo) + k)
        return total

    def _at_a_time(self, seconds: float, steps: int) -> float:
        """About how long `steps` taking `seconds` one after the other take in the lab's slots."""
        return seconds / max(1, min(len(self.resources.slots()), steps))

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
