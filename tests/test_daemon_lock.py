"""One daemon per node: the lock file, against real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from zos_upgrade.lock import DaemonLock, DaemonLocked

HOLD = """
import sys, time
from pathlib import Path
from zos_upgrade.lock import DaemonLock
lock = DaemonLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def _holder(state_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(state_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_holder_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    try:
        with pytest.raises(DaemonLocked) as info:
            DaemonLock(tmp_path).acquire()
        assert info.value.holder_pid == proc.pid
        assert f"pid {proc.pid}" in str(info.value) and str(tmp_path / "daemon.lock") in str(info.value)
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_daemon_is_free_again(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with DaemonLock(tmp_path) as lock:
        assert lock.held
        assert (tmp_path / "daemon.lock").read_text().strip() == str(os.getpid())


def test_release_lets_the_next_daemon_in_and_creates_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"
    first = DaemonLock(state)
    first.acquire()
    with pytest.raises(DaemonLocked):
        DaemonLock(state).acquire()
    first.release()
    assert not first.held
    second = DaemonLock(state)
    second.acquire()
    second.release()
