"""Test helpers. Labs run in a fresh interpreter, as `quantlab run` does from a shell.

Lab steps run in forked children (quantlab/lab/isolate.py), and GNU OpenMP is not fork-safe: a child forked from a
process whose torch has already run parallel work hangs in its first torch op. The test process has (other tests ran
torch), the CLI's never does; so labs are started here as new processes, optionally with a patch applied first."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run_cli(argv: list[str], patch: str = "", timeout: int = 1800) -> Result:
    """`quantlab ARGV` in a new interpreter; `patch` is Python run before it (e.g. to make a step fail)."""
    code = f"{patch}\nimport sys\nfrom quantlab import cli\nsys.exit(cli.main({list(map(str, argv))!r}))\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)
