"""A stalled recovery retried by the RUNNING daemon (issue 16 item 13), on the real stack: the daemon
in this process with the parts ``daemon/wiring.py`` builds from its TOML config, a real hub, a real
supervisord. The only fault: the supervisor refuses the first (re)start of a service while the journal
says ``rolling-back``, so the rollback after a failed probation cannot finish. The daemon's sleep is
injected (no real waiting between rounds); the next round retries the recovery and completes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon_node import Node
from tests.support.node import tree_digest
from tests.support.procs import REPO, zos_upgrade_cmd
from zos_upgrade.config import load_config
from zos_upgrade.daemon import run_daemon
from zos_upgrade.daemon.wiring import build, make_supervisor
from zos_upgrade.supervisor import Supervisor, SupervisorUnavailable

RUNTIME = ("run", "tmp", "var", "sup")  # what the node writes by itself (var holds the state dir)


class RefusesFirstRestartInRollback:
    """The real supervisord client, except that the first ``monitor`` (the restart of a service from
    its config) asked while the journal is in phase ``rolling-back`` fails as if the supervisor had
    gone away; every other call, and every later one, reaches supervisord."""

    def __init__(self, inner: Supervisor, journal: Path) -> None:
        self.inner, self.journal = inner, journal
        self.refused: list[str] = []  # the services whose restart was refused

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    async def monitor(self, name: str) -> None:
        if not self.refused and _phase(self.journal) == "rolling-back":
            self.refused.append(name)
            raise SupervisorUnavailable(f"injected: supervisord did not answer the restart of {name}")
        await self.inner.monitor(name)


def _phase(journal: Path) -> str:
    try:
        return str(json.loads(journal.read_text()).get("phase", ""))
    except (OSError, ValueError):
        return ""


def _status_text(node: Node) -> str:
    return subprocess.run(zos_upgrade_cmd("status", "--config", str(node.config)), capture_output=True,
                          text=True, timeout=30, check=True, cwd=REPO).stdout


@pytest.mark.timeout(60)
def test_running_daemon_retries_a_failed_rollback_and_completes_it(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0  # the real CLI installs 1.0.0
    assert node.box.wait_version("beta", "1.0.0") == "1.0.0"
    old_tree = tree_digest(node.root, exclude=RUNTIME)
    node.release("1.1.0", crash=("beta",), extra={"opt/app/new.txt": "new"})  # fails probation

    config = load_config(node.config)
    faulty = RefusesFirstRestartInRollback(make_supervisor(config), config.state_dir / "journal.json")
    parts = build(config, supervisor=faulty)
    delays: list[float] = []
    during: list[dict[str, Any]] = []

    async def sleep(delay: float) -> None:  # the daemon's only wait between rounds: none really
        delays.append(delay)
        state = node.status()
        during.append(state)
        if len(delays) == 1:  # the rollback stalled: show what an operator sees, then let it retry
            assert (node.state / "journal.json").exists()
            assert _phase(node.state / "journal.json") == "rolling-back"
            for name in ("alpha", "beta"):  # the services must really be started again by the retry
                (node.root / "run" / f"{name}.version").unlink(missing_ok=True)
            during[-1] = {**state, "status_text": _status_text(node),
                          "running": await _running(node, ("alpha", "beta"), timeout=0)}
            return
        os.kill(os.getpid(), signal.SIGTERM)  # what the supervisor sends; the daemon is idle here
        await asyncio.sleep(10)  # cancelled by the daemon's SIGTERM handler

    caplog.set_level(logging.INFO, logger="zos_upgrade")
    assert run_daemon(config, once=False, parts=parts, sleep=sleep) == 0
    assert faulty.refused == ["alpha"]
    assert len(delays) == 2

    # after the failed rollback: rollback-incomplete, the recovery pending, its next try announced
    stalled = during[0]
    assert stalled["last_result"] == "rollback-incomplete", stalled
    assert "injected: supervisord did not answer the restart of alpha" in stalled["last_error"]
    recovery = stalled["recovery"]
    assert recovery is not None and recovery["attempts"] == 0 and recovery["next_try"] is not None
    assert "rollback failed" in recovery["last_error"] and "SupervisorUnavailable" in recovery["last_error"]
    assert stalled["current_version"] == "1.0.0"
    assert "recovery:       PENDING since" in stalled["status_text"]
    assert "last result:    rollback-incomplete" in stalled["status_text"]
    assert stalled["running"] == []  # alpha's restart refused, beta never reached: neither runs

    # the next round retried it and finished the rollback: journal gone, recovery cleared; 1.1.0
    # failed at probation, so it is held rather than tried a third time
    done = during[1]
    assert done["recovery"] is None and done["last_result"] == "held", done
    assert "clear-failed 1.1.0" in done["last_error"]
    assert not (node.state / "journal.json").exists()
    assert not any((node.state / "backup").rglob("*"))
    messages = [r.getMessage() for r in caplog.records]
    assert "unfinished transaction recovered" in messages and "recovery completed" in messages
    final = node.status()
    assert final["recovery"] is None and final["current_version"] == "1.0.0"
    assert "recovery:" not in _status_text(node)

    # the node is exactly the old release, and its services run it again
    assert tree_digest(node.root, exclude=RUNTIME) == old_tree
    assert not (node.root / "opt/app/new.txt").exists()
    assert json.loads((node.root / "tmp/flist.info").read_text())["target"] == "zos:1.0.0.fl"
    for name in ("alpha", "beta"):
        assert node.box.wait_version(name, "1.0.0") == "1.0.0"
    assert asyncio.run(_running(node, ("alpha", "beta"))) == ["alpha", "beta"]


async def _running(node: Node, names: tuple[str, ...], timeout: float = 10) -> list[str]:
    """Those of ``names`` supervisord reports RUNNING, once all are or ``timeout`` passed."""
    sup = make_supervisor(load_config(node.config))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            states = await sup.list()
            running = [n for n in names if states.get(n) == "RUNNING"]
            if running == list(names) or asyncio.get_running_loop().time() >= deadline:
                return running
            await asyncio.sleep(0.1)  # supervisord calls a program RUNNING after its startsecs
    finally:
        await sup.aclose()
