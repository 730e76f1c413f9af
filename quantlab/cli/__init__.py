"""The `quantlab` command: parse arguments, call the API (quantlab/api.py), print, turn errors into exit codes.

Exit codes: 0 success; 2 bad input (one line saying what is wrong and what is allowed); 1 internal failure, a step
killed for memory (one line naming it), `check` found violations or a compile failed; 130 interrupted (Ctrl-C), with
the command that resumes.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

from quantlab.console import command_log, log_to_terminal
from quantlab.errors import StepKilled, UserError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # LiteRT/absl info lines are noise for users

from quantlab.cli.parser import build_parser  # noqa: E402  (after the environment above)

# Libraries whose import-time warnings ("Failed to load ... .so", "Detected no triton", Enum registration notices)
# would otherwise reach the terminal as "quantlab: WARNING: ..." lines.
NOISY_LOGGERS = ("torchao", "torch", "jax", "absl", "transformers")


def _folder(args) -> Path:
    """The artifact folder a standalone command works in: its quantlab.log gets the libraries' output."""
    if args.command == "export":
        return Path(args.out)
    if args.command in ("check", "compile"):
        return Path(args.model).parent
    return Path(args.dir)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    log_to_terminal()
    for noisy in NOISY_LOGGERS:  # their import-time notices are not the user's business (run --verbose keeps them)
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        if args.command in ("run", "sweep"):  # the lab keeps its own log in --out; a sweep one per lab
            return args.func(args)
        with command_log(_folder(args), args.verbose):
            return args.func(args)
    except UserError as exc:
        print(f"quantlab: error: {exc}", file=sys.stderr)
        return 2
    except StepKilled as exc:
        print(f"quantlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        again = "quantlab " + shlex.join(argv)
        what = f"resume with: {again}" if args.command == "run" else f"re-run to redo it: {again}"
        print(f"quantlab: interrupted; no partial artifact was left behind; {what}", file=sys.stderr)
        return 130

