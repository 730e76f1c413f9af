"""isolate.run_retrying_crashes with real forked children: a child that crashes (SIGSEGV) once is started again and
its result comes back with the crash noted; one that crashes every time raises StepKilled after two tries; an
exception or a SIGKILL (out of memory) is not retried."""

from __future__ import annotations

import faulthandler
import os
import signal

import pytest

from quantlab.errors import StepKilled
from quantlab.lab.isolate import run_retrying_crashes


def crash_first(flag) -> dict:
    if not flag.exists():
        flag.write_text("crashed once")
        faulthandler.disable()  # (pytest's: no dump of a crash made on purpose)
        os.kill(os.getpid(), signal.SIGSEGV)
    return {"pid": os.getpid()}


def test_a_crash_is_retried_once_and_reported(tmp_path):
    res, crashes = run_retrying_crashes(lambda: crash_first(tmp_path / "flag"), "t:crash-once")
    assert res["pid"] != os.getpid()  # it ran in a child
    assert len(crashes) == 1 and crashes[0].startswith("signal 11 after ")


def test_two_crashes_raise_and_no_third_try(tmp_path):
    tries = tmp_path / "tries"

    def always() -> None:
        with tries.open("a") as f:
            f.write("x")
        faulthandler.disable()  # (pytest's: no dump of a crash made on purpose)
        os.kill(os.getpid(), signal.SIGSEGV)

    with pytest.raises(StepKilled) as info:
        run_retrying_crashes(always, "t:always")
    assert info.value.exitcode == -signal.SIGSEGV and tries.read_text() == "xx"


def test_sigkill_and_exceptions_are_not_retried(tmp_path):
    tries = tmp_path / "tries"

    def killed() -> None:
        with tries.open("a") as f:
            f.write("x")
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(StepKilled) as info:
        run_retrying_crashes(killed, "t:killed")
    assert info.value.exitcode == -signal.SIGKILL and tries.read_text() == "x"

    def fails() -> None:
        raise ValueError("not a crash")

    with pytest.raises(ValueError, match="not a crash"):
        run_retrying_crashes(fails, "t:fails")
