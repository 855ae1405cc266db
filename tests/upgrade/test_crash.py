"""Crash points: a no-op unless named in the environment; then SIGKILL, with no cleanup at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from zos_upgrade.upgrade.crash import CRASH_ENV, CRASH_POINTS, ROLLBACK_CRASH_POINTS, crash_point


def test_points_are_unique_and_in_transaction_order() -> None:
    assert len(set(CRASH_POINTS)) == len(CRASH_POINTS)
    assert CRASH_POINTS[0] == "after-fetch" and CRASH_POINTS[-1] == "after-boot-files"
    order = [CRASH_POINTS.index(p) for p in ("after-backup", "mid-apply", "after-manifest")]
    assert order == sorted(order)
    assert not set(ROLLBACK_CRASH_POINTS) & set(CRASH_POINTS)


def test_unknown_point_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown crash point"):
        crash_point("after-lunch")


def test_not_named_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_ENV, "after-plan")
    crash_point("mid-apply")  # still alive


def test_named_point_kills_the_process_with_sigkill() -> None:
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('atexit ran'))\n"
            "from zos_upgrade.upgrade.crash import crash_point\n"
            "crash_point('after-fetch'); print('survived')\n")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, CRASH_ENV: "mid-apply"},
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0 and "survived" in run.stdout
    code = code.replace("after-fetch", "mid-apply")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, CRASH_ENV: "mid-apply"},
                         capture_output=True, text=True, check=False)
    assert run.returncode == -signal.SIGKILL
    assert "survived" not in run.stdout and "atexit ran" not in run.stdout
