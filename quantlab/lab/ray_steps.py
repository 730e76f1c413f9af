"""Run a stage's steps as Ray tasks — on a local Ray, or on the cluster at `--ray-address` — instead of in forked
children on this machine (scheduler.py).

Choose it when the work outgrows one machine (the 1B shape, many schemes or SoCs): every step becomes a task that
declares the memory it peaks at (its last measured peak +25 %, else its builder's typical figure scaled to the model,
as the local scheduler does), so Ray never places two steps on a node whose memory they would not fit together,
and the CPUs it uses (one, or as many as the lab's node has when nothing else of the stage can run beside it; its
LiteRT and torch threads follow: procmon.cores). A task runs in a worker process of
its own (`max_calls=1`), so its memory goes back to the node when it ends and its peak is its own. A step that names
another of its stage in `needs` is submitted when that one has finished.

An `exclusive` step (a CPU speed measurement) runs on the lab's own node, alone among this lab's steps, with every
CPU of that node: every variant's speed is then measured on one machine, so their ratios mean something.

On a cluster every node must see the run folder at the same path (a shared filesystem) and have quantlab installed in
the same environment; the steps read and write the folder as they do locally, and run in the lab's working directory.
After a step fails nothing new is submitted; the running ones finish and are recorded, then the first error is
raised. Ctrl-C cancels every running task.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Callable

from quantlab.errors import StepKilled, UserError
from quantlab.lab.stages import Step

LOCAL = "local"
_ADDRESS = re.compile(r"(?:ray://)?([A-Za-z0-9_.-]+):(\d{1,5})")  # a head's host:port


def _run_task(fn: Callable[[], Any], cwd: str, threads: int) -> dict:
    """The body of every task: the step in the lab's working directory, with `threads` threads."""
    import ray

    from quantlab.procmon import cpu_seconds, limit_threads, step_peak_mb

    os.chdir(cwd)
    limit_threads(threads)
    t0, cpu0 = time.perf_counter(), cpu_seconds()  # (a worker process runs many tasks: this one's share)
    result = fn()
    return {"result": result, "peak_mb": step_peak_mb(), "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(), "seconds": time.perf_counter() - t0, "cpu_s": cpu_seconds() - cpu0}


class RayRunner:
    """A connection to Ray for one lab run (`with RayRunner(address) as r: run_steps(steps, r.backend(mem), done)`,
    scheduler.run_steps). address: `local` starts a Ray on this machine (every core), else host:port of a running
    cluster's head."""

    def __init__(self, address: str, log: Callable[[str], None] = print) -> None:
        self.address, self.log = address, log
        self.node_id = ""
        self.node_cpus = 1
        self.largest_node_mb = 0.0

    def __enter__(self) -> "RayRunner":
        import ray

        connect(self.address)
        self.node_id = ray.get_runtime_context().get_node_id()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        mine = next((n for n in nodes if n["NodeID"] == self.node_id), None)
        if mine is None:  # a driver on a machine that is not a node of the cluster: speed runs on any one node
            mine = max(nodes, key=lambda n: n["Resources"].get("CPU", 0))
            self.node_id = mine["NodeID"]
        self.node_cpus = max(1, int(mine["Resources"].get("CPU", 1)))
        self.largest_node_mb = max(n["Resources"].get("memory", 0) for n in nodes) / 1e6
        self.log(f"  Ray: {len(nodes)} node(s), {int(sum(n['Resources'].get('CPU', 0) for n in nodes))} CPUs, "
                 f"{sum(n['Resources'].get('memory', 0) for n in nodes) / 1e9:.1f} GB for tasks")
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        ray.shutdown()

    def backend(self, memory_mb: Callable[[Step], float]) -> "_Tasks":
        """The steps as tasks of this connection, for scheduler.run_steps; `memory_mb(step)`: its declared peak."""
        return _Tasks(self, memory_mb)


class _Tasks:
    """scheduler.Backend on Ray: every ready step is submitted at once (Ray holds it until its memory and CPUs are
    free on some node); its handle is the task's object ref."""

    def __init__(self, runner: RayRunner, memory_mb: Callable[[Step], float]) -> None:
        import ray

        self.runner, self.memory_mb = runner, memory_mb
        self.task = ray.remote(max_calls=1, max_retries=0)(_run_task)
        self.steps: dict[Any, Step] = {}
        self.cwd = os.getcwd()

    def start(self, step: Step, alone: bool) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        r = self.runner
        mem = self.memory_mb(step)
        if mem > r.largest_node_mb:  # infeasible as declared: it gets the largest node to itself
            r.log(f"  {step.name} declares {mem / 1e3:.1f} GB, more than any node offers; it asks for "
                  f"{r.largest_node_mb / 1e3:.1f} GB")
            mem = r.largest_node_mb
        opts: dict[str, Any] = {"name": step.name, "memory": max(1, int(mem * 1e6)), "num_cpus": 1}
        threads = 1
        if step.exclusive:
            opts.update(num_cpus=r.node_cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(r.node_id, soft=False))
            threads = r.node_cpus
        elif alone:  # nothing else can start before it ends: a node's worth of CPUs (export, calibrate, search)
            opts["num_cpus"] = threads = r.node_cpus
        ref = self.task.options(**opts).remote(step.run, self.cwd, threads)
        self.steps[ref] = step
        return ref

    def wait(self, handles: list, timeout: float | None = None) -> list:
        import ray

        return ray.wait(handles, num_returns=1, timeout=timeout)[0]

    def finish(self, handle: Any) -> tuple[Any, float, dict | None]:
        import ray

        step = self.steps.pop(handle)
        try:
            out = ray.get(handle)
        except Exception as exc:  # noqa: BLE001 - the step's own error, or StepKilled
            raise _cause(exc, step, self.memory_mb(step)) from None
        # the step's own time: the lab's clock would also count the time Ray held the task for a free CPU
        return out["result"], out["peak_mb"], {k: out[k] for k in ("node", "pid", "seconds", "cpu_s")}

    def stop(self, handles: list) -> None:
        import ray

        for ref in handles:
            ray.cancel(ref, force=True)


def connect(address: str) -> None:
    """ray.init: `local` starts a Ray on this machine (every core), else joins the cluster at `address`; Ray's own
    logs stay out of the console. A cluster that is not there is a one-line UserError."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    probe(address)  # (the config checked too; the cluster may have gone since)
    try:
        if address == LOCAL:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, object_store_memory=256 * 2**20)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"--ray-address {address}: no Ray cluster there ({str(exc).splitlines()[0][:160]}); "
                        "start one (`ray start --head`) or pass --ray-address local") from None


def check_address(address: str) -> None:
    """`local`, `auto` (the cluster this machine's `ray start` joined) or host:port, where something answers; else a
    one-line UserError naming the fix."""
    if address not in (LOCAL, "auto") and _ADDRESS.fullmatch(address) is None:
        raise UserError(f"--ray-address {address!r}: pass host:port of a Ray head (e.g. 10.0.0.5:6379), auto or local")
    probe(address)


def probe(address: str) -> None:
    """A host:port with nothing listening fails here in seconds (ray.init would retry for minutes)."""
    import socket

    m = _ADDRESS.fullmatch(address)
    if m is None:
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=5).close()
    except OSError as exc:
        raise UserError(f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start a head "
                        "(`ray start --head`) or pass --ray-address local") from None


def _cause(exc: Exception, step: Step, declared_mb: float) -> BaseException:
    """The step's own exception (a UserError stays one line), or StepKilled when Ray lost its worker."""
    from ray import exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return cause
    if isinstance(exc, (rex.OutOfMemoryError, rex.WorkerCrashedError)):
        return StepKilled(step.name, -9 if isinstance(exc, rex.OutOfMemoryError) else None, declared_mb)
    return exc
