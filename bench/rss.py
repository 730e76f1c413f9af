"""Benchmarks measure child processes with quantlab's own sampler."""

from quantlab.procmon import run_measured as _run


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in GB of the process tree, combined output; its last lines)."""
    rc, secs, peak_mb, out = _run(cmd, env)
    return rc, secs, peak_mb / 1e3, out
