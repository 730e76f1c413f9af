"""Benchmarks measure child processes with quantlab's own sampler."""

from quantlab.procmon import run_measured as _run


def run_measured(cmd: list[str]) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in GB, last lines of output)."""
    rc, secs, peak_mb, out = _run(cmd)
    return rc, secs, peak_mb / 1e3, "\n".join(out.strip().splitlines()[-5:])
