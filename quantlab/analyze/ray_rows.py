"""The search's sensitivity rows measured by Ray actors across a cluster (the lab on `--ray-address`).

Each actor is a row worker (sensitivity.Bench with `worker` set): it declares one CPU (one LiteRT thread) and the
memory a row peaks at (sensitivity.row_bytes: ~3 GB at the 270M, 6 GB at the 1B shape), loads the folder's ranges
and FP32 embedder once, and then quantizes and scores the rows it is handed against the FP32 logits the main bench
wrote to the folder. The folder must be at the same path on every node (as for every lab step on Ray). Scores are
the same as measured in one process (tests/test_ray_lab.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator


class _Row:
    """A Ray actor: one row worker."""

    def __init__(self, folder: str, worker: int) -> None:
        from quantlab.procmon import limit_threads

        limit_threads(1)  # before torch and LiteRT load
        from quantlab.analyze.sensitivity import Bench

        self.bench = Bench(Path(folder), worker=worker)

    def measure(self, recipe: list[dict]) -> dict:
        return self.bench.measure(recipe)


def measure_rows(folder: Path, recipes: list[list[dict]], row_mb: float) -> Iterator[dict]:
    """Each recipe's scores, in order, measured by as many actors as the cluster has CPUs (at most one per row). Ray
    must be connected (the lab's step runs as a Ray task)."""
    import ray
    from ray.util import ActorPool

    n = max(1, min(len(recipes), int(ray.cluster_resources().get("CPU", 1))))
    actor = ray.remote(num_cpus=1, memory=max(1, int(row_mb * 1e6)), max_restarts=0)(_Row)
    actors = [actor.remote(str(Path(folder).resolve()), 1000 + i) for i in range(n)]
    try:
        yield from ActorPool(actors).map(lambda a, r: a.measure.remote(r), recipes)
    finally:
        for a in actors:
            ray.kill(a)
