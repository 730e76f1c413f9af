"""The lab's step scheduler (quantlab/lab/scheduler.py) with real forked steps: side by side on cores of their own,
never over the memory budget, after the steps they need, exclusive steps alone, and a failure that lets the running
steps finish."""

from __future__ import annotations

import os
import time

import pytest

from quantlab.lab.scheduler import Forked, Resources, chain_seconds, run_steps
from quantlab.lab.stages import Step

CPUS = tuple(sorted(os.sched_getaffinity(0)))
two_cores = pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 cores")


def probe(seconds: float = 1.0, fail: bool = False):
    def run() -> dict:
        from quantlab.procmon import cores

        t0 = time.time()
        time.sleep(seconds)
        if fail:
            raise ValueError("this step fails")
        return {"start": t0, "end": time.time(), "cpus": sorted(os.sched_getaffinity(0)), "cores": cores(),
                "omp": os.environ.get("OMP_NUM_THREADS")}
    return run


def run(steps: list[Step], jobs: int = 2, budget_mb: float = 10_000, seconds=None) -> dict[str, dict]:
    got: dict[str, dict] = {}
    order: list[str] = []

    def done(step, result, peak_mb, seconds, where):
        got[step.name] = result
        order.append(step.name)
        assert peak_mb > 0 and seconds > 0

    run_steps(steps, Forked(Resources(CPUS, jobs, budget_mb), lambda s: s.memory_gb * 1e3), done, seconds=seconds)
    got["order"] = order  # type: ignore[assignment]
    return got


def overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


@two_cores
def test_two_steps_run_side_by_side_each_on_a_core_of_its_own():
    got = run([Step("s:a", probe()), Step("s:b", probe())])
    a, b = got["s:a"], got["s:b"]
    assert overlap(a, b)
    assert len(a["cpus"]) == len(b["cpus"]) == len(CPUS) // 2 and not set(a["cpus"]) & set(b["cpus"])
    assert a["cores"] == len(a["cpus"]) and a["omp"] == str(len(a["cpus"]))  # thread counts follow the pinning


@two_cores
def test_steps_whose_declared_memory_would_not_fit_together_run_one_after_the_other():
    got = run([Step("s:a", probe(), memory_gb=6), Step("s:b", probe(), memory_gb=6), Step("s:c", probe(), memory_gb=3)],
              budget_mb=10_000)
    a, b, c = got["s:a"], got["s:b"], got["s:c"]
    assert not overlap(a, b)
    assert overlap(a, c)  # the small one was not held back behind the big one


def test_a_step_needing_another_of_its_stage_starts_after_it_and_a_lone_step_gets_every_core():
    got = run([Step("s:b", probe(0.3), needs=("s:a", "upstream:skipped")), Step("s:a", probe(0.3))])
    assert got["s:b"]["start"] >= got["s:a"]["end"]
    assert got["order"] == ["s:a", "s:b"]
    assert got["s:a"]["cpus"] == list(CPUS) and got["s:b"]["cpus"] == list(CPUS)  # each alone: every core


@two_cores
def test_an_exclusive_step_runs_alone_on_every_core():
    got = run([Step("s:a", probe()), Step("s:x", probe(0.3), exclusive=True), Step("s:b", probe())])
    x = got["s:x"]
    assert x["cpus"] == list(CPUS)
    assert not overlap(x, got["s:a"]) and not overlap(x, got["s:b"])


@two_cores
def test_a_failure_lets_the_running_step_finish_starts_nothing_new_and_raises():
    got: dict[str, dict] = {}
    steps = [Step("s:slow", probe(1.5)), Step("s:bad", probe(0.2, fail=True)), Step("s:later", probe(0.1))]
    with pytest.raises(ValueError, match="this step fails"):
        run_steps(steps, Forked(Resources(CPUS, 2, 10_000), lambda s: 0.0),
                  lambda s, r, p, t, w: got.update({s.name: r}))
    assert set(got) == {"s:slow"}  # finished and recorded; s:later never started


def test_one_job_runs_one_step_at_a_time_on_every_core():
    got = run([Step("s:a", probe(0.3)), Step("s:b", probe(0.3))], jobs=1)
    assert not overlap(got["s:a"], got["s:b"])
    assert got["s:a"]["cpus"] == list(CPUS) and got["s:a"]["omp"] in (None, os.environ.get("OMP_NUM_THREADS"))


def test_steps_that_wait_for_each_other_are_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="wait for each other"):
        run([Step("s:a", probe(0.1), needs=("s:b",)), Step("s:b", probe(0.1), needs=("s:a",))])


def test_steps_run_a_step_per_core_unless_jobs_says_otherwise(tmp_path):
    """Without --jobs the lab's stages run a step per core (each slot one core of this process's, all cores covered;
    on 2 cores the scoring stage measured 1.67x faster so, docs/results/2026-12-03.md §9); --jobs 1 gives every step
    the whole machine, one at a time; --jobs N caps the slots at the cores there are."""
    from quantlab.lab.config import RunConfig
    from quantlab.lab.pipeline import Lab

    slots = Lab(RunConfig(model="tiny-random", out=tmp_path / "o")).resources.slots()
    assert len(slots) == len(CPUS) and all(len(s) == 1 for s in slots) and set().union(*slots) == set(CPUS)
    one = Lab(RunConfig(model="tiny-random", out=tmp_path / "o", jobs=1)).resources.slots()
    assert one == [frozenset(CPUS)]
    many = Lab(RunConfig(model="tiny-random", out=tmp_path / "o", jobs=64)).resources.slots()
    assert len(many) == len(CPUS)


def _spawn_400mb() -> dict:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "b = bytearray(400_000_000); b[::4096] = b'x' * len(b[::4096])"],
                   check=True)
    return {}


def test_a_steps_peak_counts_the_processes_it_ran():
    """A step whose work runs in a child process (the compile stage's compiler) reports that child's peak, so that
    the memory it declares next time is what it needs; the step process itself stays small."""
    peaks = {}
    run_steps([Step("s:child", _spawn_400mb)], Forked(Resources(CPUS, 1, 10_000), lambda s: 0.0),
              lambda s, r, p, t, w: peaks.update({s.name: p}))
    assert peaks["s:child"] >= 400


def _spin(seconds: float) -> None:
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        pass


def _spin_in_a_child() -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass"],
                   check=True)


def test_a_step_reports_the_cpu_seconds_it_and_its_children_used():
    """A step busy on a core for 0.6 s, one that sleeps for as long, one whose work runs in a program it starts (a
    compile): each one's CPU seconds come back with it (the lab records them: the cores each step keeps busy)."""
    got = {}
    steps = [Step("s:busy", lambda: _spin(0.6)), Step("s:idle", probe(0.6)), Step("s:child", _spin_in_a_child)]
    run_steps(steps, Forked(Resources(CPUS, 1, 10_000), lambda s: 0.0),
              lambda s, r, p, t, w: got.update({s.name: (w["cpu_s"], t)}))
    assert 0.55 <= got["s:busy"][0] <= got["s:busy"][1] + 0.2, got
    assert got["s:idle"][0] < 0.3, got  # (the forked child's own start-up only)
    assert got["s:child"][0] >= 0.55, got


def _rows(quiet: bool) -> int:
    from quantlab.progress import steps

    for _ in steps(range(4), "rows", quiet=quiet):
        time.sleep(0.5)
    return 4


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet bar", "shown bar"])
def test_a_long_step_reports_where_it_is_while_the_lab_waits(tmp_path, quiet):
    """A step's bar, quiet (as most lab steps' are) or shown (calibration's), writes its count to the step's progress
    file (progress.Reporting); the lab's tick reads it while no step ends and logs a line with the count and what is
    left; the file goes when the step ends. A shown bar's own updates are not counted twice."""
    import functools

    from quantlab.lab.heartbeat import Heartbeat

    lines: list[str] = []
    beat = Heartbeat(tmp_path, lines.append, every_s=0.0)
    seen: list[tuple[str, float]] = []

    def tick(running):
        seen.extend((s.name, t0) for s, t0 in running)
        beat.tick(running, lambda: "ETA x")

    def done(step, result, peak_mb, seconds, where):
        assert result == 4 and seconds >= 2.0
        beat.ended(step.name)

    step = beat.wrap(Step("analyze", functools.partial(_rows, quiet)))
    run_steps([step], Forked(Resources(CPUS, 1, 10_000), lambda s: 0.0), done, tick, tick_s=0.2)
    assert seen and all(name == "analyze" for name, _ in seen)
    counts = [int(ln.split("rows ")[1].split("/")[0]) for ln in lines if "rows " in ln]
    assert all(ln.startswith("  analyze") and ln.endswith("· ETA x") for ln in lines)
    assert counts == sorted(counts) and set(counts) >= {1, 2, 3} and max(counts) <= 4, lines
    assert any("/4 (~0:0" in ln for ln in lines)  # a pace once one row is done: ~0.5 s a row, under 2 s left
    assert not beat.path("analyze").exists()
    beat.tidy()
    assert not beat.dir.exists()


@two_cores
def test_the_longest_steps_start_first_so_that_two_slots_finish_together():
    """Four steps on two slots: in list order the two longest would run one after the other (ending near 2.0 s);
    longest first, the two slots finish together (~1.6 s)."""
    secs = {"s:w8": 0.6, "s:w4": 0.97, "s:mix": 0.49, "s:int8": 1.05}
    steps = [Step(n, probe(t), typical_s=t) for n, t in secs.items()]
    got = run(steps, seconds=lambda s: s.typical_s)
    first = {n for n in secs if got[n]["start"] < min(got[m]["end"] for m in secs)}
    assert first == {"s:int8", "s:w4"}, first
    end = max(got[n]["end"] for n in secs) - min(got[n]["start"] for n in secs)
    assert end < 1.85, f"{end:.2f} s: the two slots did not finish together (list order ends near 2.0 s)"


def test_a_step_that_others_wait_for_counts_their_time_too():
    """One slot: x (0.2 s) gates y (0.5 s), z (0.5 s) gates nothing: x's chain (0.7 s) is longer, so x starts first,
    though z alone is the longer step; without expected seconds the list order holds."""
    steps = [Step("s:z", probe(0.1), typical_s=0.5), Step("s:x", probe(0.1), typical_s=0.2),
             Step("s:y", probe(0.1), needs=("s:x",), typical_s=0.5)]
    assert chain_seconds(steps, lambda s: s.typical_s) == {"s:z": 0.5, "s:x": 0.7, "s:y": 0.5}
    assert run(steps, jobs=1, seconds=lambda s: s.typical_s)["order"] == ["s:x", "s:z", "s:y"]
    assert run(steps, jobs=1)["order"] == ["s:z", "s:x", "s:y"]
