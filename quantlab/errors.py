"""The kinds of failure quantlab distinguishes, and the exit code each maps to.

`UserError` is bad input the user can fix (exit code 2, one line, no traceback). `StepKilled` is a lab step whose
process the system killed (exit code 1, one line naming the step and the memory it reached). Anything else is an
internal failure (exit code 1, with its traceback). Ctrl-C exits 130, printing the command that resumes the run.
"""


class UserError(Exception):
    """Bad input: the message says what was wrong, what is allowed, and how to fix it."""


class StepKilled(Exception):
    """A step's process died without an answer (killed by the system, usually for memory)."""

    def __init__(self, step: str, exitcode: int | None, peak_mb: float) -> None:
        self.step, self.exitcode, self.peak_mb = step, exitcode, peak_mb
        signal = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
        hint = " (out of memory: free memory or use a machine with more)" if exitcode == -9 else ""
        super().__init__(f"step {step} was killed ({signal}) after its memory reached {peak_mb / 1e3:.1f} GB{hint}; "
                         "re-run the same command to resume")
