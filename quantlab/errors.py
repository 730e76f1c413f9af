"""The two kinds of failure quantlab distinguishes.

`UserError` is bad input the user can fix (exit code 2, one line, no traceback). Anything else is an internal failure
(exit code 1).
"""


class UserError(Exception):
    """Bad input: the message says what was wrong, what is allowed, and how to fix it."""
