"""The parts `zos-upgrade status` trusts (issue 18 item 6): the lock holder read from the kernel's lock
table, the pid checked, the bounded history, control.json read if present, wrapped reasons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.node.test_status_cli import STATE, make_node
from zos_upgrade.cli import cli
from zos_upgrade.cli.status import collect_status, render_text
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.lock import DaemonLock, lock_holder
from zos_upgrade.node.control import NodeControl
from zos_upgrade.node.history import MAX_ENTRIES, append_transaction, read_history
from zos_upgrade.node.liveness import check_daemon
from zos_upgrade.node.state import DaemonState, write_state
from zos_upgrade.versions import Version

HOLDER = """
import sys, time
from pathlib import Path
from zos_upgrade.lock import DaemonLock
DaemonLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(30)
"""


def test_lock_holder_is_read_from_the_kernel_not_taken(tmp_path: Path) -> None:
    assert lock_holder(tmp_path) is None  # no lock file
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "daemon"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"locked\n"
        assert lock_holder(tmp_path) == child.pid
        assert lock_holder(tmp_path) == child.pid  # probing took nothing: still held, still readable
    finally:
        child.kill()
        child.wait(timeout=10)
    assert lock_holder(tmp_path) is None
    with DaemonLock(tmp_path):  # and free for a daemon
        pass
    with pytest.raises(ZosUpgradeError, match="lock table"):
        lock_holder(tmp_path, proc_locks=tmp_path / "nope")


def test_a_recorded_pid_is_checked_not_believed(tmp_path: Path) -> None:
    (tmp_path / "daemon.lock").write_text("")
    # our own pid exists but is not a daemon and holds no lock: a reused pid
    alive = check_daemon(tmp_path, os.getpid())
    assert (alive.state, alive.process_exists, alive.is_daemon) == ("stopped", True, False)
    assert not alive.lock_held
    assert "now another program" in alive.detail
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    dead = check_daemon(tmp_path, gone.pid)
    assert dead.state == "stopped" and not dead.process_exists and "has exited" in dead.detail
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "daemon"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"locked\n"
        running = check_daemon(tmp_path, gone.pid)  # the lock holder wins over a stale recorded pid
        assert running.state == "running" and running.pid == child.pid and running.lock_held
        assert not running.is_daemon and "is not a zos-upgrade daemon" in running.detail  # "python -c"
    finally:
        child.kill()
        child.wait(timeout=10)


def test_history_is_bounded_and_a_damaged_one_is_shown_then_replaced(tmp_path: Path) -> None:
    for i in range(MAX_ENTRIES + 5):
        append_transaction(tmp_path, {"kind": "boot", "from_version": f"1.0.{i}",
                                      "to_version": f"1.0.{i + 1}", "result": "committed", "time": float(i),
                                      "reason": "x" * 5000})
    history = read_history(tmp_path)
    assert len(history) == MAX_ENTRIES and history[-1].to_version == f"1.0.{MAX_ENTRIES + 5}"
    assert len(history[0].reason) == 2000
    (tmp_path / "transactions.json").write_text("[")
    make_node(tmp_path / "node")
    status = collect_status(tmp_path / "node", tmp_path)
    assert status.history == [] and "not a transaction history" in str(status.history_error)
    append_transaction(tmp_path, {"kind": "boot", "from_version": "1.0.0", "to_version": "1.1.0",
                                  "result": "rolled-back", "time": 1.0, "step": "probation",
                                  "reason": "beta"})
    assert [e.result for e in read_history(tmp_path)] == ["rolled-back"]


def test_control_file_is_read_when_present_and_refused_when_not_ours(tmp_path: Path) -> None:
    make_node(tmp_path)
    state = tmp_path / STATE
    state.mkdir(parents=True)
    runner = CliRunner()
    doc = json.loads(runner.invoke(cli, ["status", "--root", str(tmp_path), "--json"]).output)
    assert doc["control"] == {"hold": None, "pause": None} and doc["control_error"] is None
    assert doc["schema_version"] == 1
    assert "control:        automatic upgrades (not paused, no hold)" in \
        runner.invoke(cli, ["status", "--root", str(tmp_path)]).output
    control = NodeControl(state, clock=lambda: 1_000.0)
    control.set_hold(Version.parse("3.1.2"))
    control.set_pause()
    result = runner.invoke(cli, ["status", "--root", str(tmp_path)])
    assert "paused:         since 1970-01-01 00:16:40 UTC" in result.output
    assert "held at:        3.1.2 since 1970-01-01 00:16:40 UTC" in result.output
    flat = " ".join(result.output.split())  # the lines wrap under their labels
    assert "until `zos-upgrade resume`" in flat and "until `zos-upgrade unhold`" in flat
    doc = json.loads(runner.invoke(cli, ["status", "--root", str(tmp_path), "--json"]).output)
    assert doc["control"]["hold"]["version"] == "3.1.2" and doc["control"]["pause"] is not None
    (state / "control.json").write_text(json.dumps({"hold": 3, "paused": "yes"}))
    result = runner.invoke(cli, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 0 and "control:        unreadable, nothing is applied (" in result.output
    assert "control.json" in result.output


def test_drift_next_check_and_multi_line_reasons_stay_aligned(tmp_path: Path) -> None:
    make_node(tmp_path)  # runs 3.1.2
    reason = ("service beta did not stay up during probation (exit status 3). Its last output:\n"
              "Traceback (most recent call last):\n  File \"service.py\", line 9\n"
              "RuntimeError: " + "boom " * 30)
    write_state(tmp_path / STATE, DaemonState(updated=1000.0, last_check=1000.0, last_result="rolled-back",
                                               last_error=reason, channel_version="3.2.0", next_check=1600.0))
    status = collect_status(tmp_path, tmp_path / STATE)
    assert status.drift is not None and status.drift.state == "behind"
    text = render_text(status, now=1000.0)
    assert "channel:        3.2.0 (behind: newer than the node's 3.1.2)" in text
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("last error:")))
    block = []
    for line in lines[start + 1:]:
        if not line.startswith(" " * 16):
            break
        block.append(line)
    assert len(block) >= 4, text  # the reason's own lines, and the long one wrapped, all under the value
    assert all(len(line) <= 100 for line in lines[start:start + len(block) + 1])
    assert any(line.strip().startswith("Traceback") for line in block)
    ahead = collect_status(tmp_path, tmp_path / STATE)
    ahead.drift = type(ahead.drift)("ahead", "3.1.2", "3.0.0") if ahead.drift else None
    assert "3.0.0 (ahead: the node runs a newer release (3.1.2)" in render_text(ahead, now=1000.0)
