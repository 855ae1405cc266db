"""Recovery that stalls (issue 16 item 13): the running daemon retries it with backoff and applies
nothing meanwhile; an unreadable journal refuses the start naming the way out."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.test_failed_releases import Link, Node, event
from zos_upgrade.daemon import BootPolicy, Daemon, NodeParts
from zos_upgrade.daemon.loop import RECOVER_COMMAND, JournalBlocked
from zos_upgrade.upgrade import JournalUnreadable, RollbackIncomplete
from zos_upgrade.versions import Version


class Stalled(Node):
    """recover() raises the queued errors, one per call, then recovers."""

    def __init__(self, *errors: Exception) -> None:
        super().__init__(Version.parse("1.0.0"))
        self.errors = list(errors)
        self.recoveries = 0

    async def recover(self) -> str | None:
        self.recoveries += 1
        if self.errors:
            raise self.errors.pop(0)
        return "rolled back to 1.0.0"


def _daemon(node: Node, link: Link, state: Path, sleep: Any) -> Daemon:
    parts = NodeParts(upgrader=node, boot=node, policies=[BootPolicy(node, object(), link.watcher)])
    return Daemon(parts, state_dir=state, interval=10, sleep=sleep, max_backoff=100)


def test_a_failed_recovery_is_retried_by_the_running_daemon_with_backoff(tmp_path: Path) -> None:
    fail = RollbackIncomplete("service beta: supervisor refused the restart", step="restart")
    node, link = Stalled(fail, fail), Link(event("1.1.0", "good"))
    delays: list[float] = []
    states: list[dict[str, Any]] = []
    daemon: Daemon

    async def sleep(delay: float) -> None:
        delays.append(delay)
        states.append(json.loads((tmp_path / "status.json").read_text()))
        if node.version == Version.parse("1.1.0"):
            daemon.request_stop()
        await asyncio.sleep(0)

    daemon = _daemon(node, link, tmp_path, sleep)
    assert asyncio.run(daemon.run(once=False)) == 0
    # start-up failed, round 2 failed, round 3 recovered and then applied 1.1.0
    assert node.recoveries == 3 and node.tried == ["good"]
    assert states[0]["last_result"] == "rollback-incomplete"
    first = states[0]["recovery"]
    assert first["attempts"] == 1 and "supervisor refused" in first["last_error"]
    assert states[1]["recovery"]["attempts"] == 2 and states[1]["recovery"]["next_try"] is not None
    assert delays[1] > delays[0]  # backoff grows while recovery fails
    final = json.loads((tmp_path / "status.json").read_text())
    assert final["recovery"] is None and final["current_version"] == "1.1.0"


def test_a_transaction_left_unfinished_is_recovered_in_the_loop_before_anything_else(tmp_path: Path) -> None:
    node, link = Stalled(), Link(event("1.1.0", "bad"))
    node.fail["bad"] = RollbackIncomplete("probation failed; rollback failed: restart refused",
                                          step="probation")
    daemon = _daemon(node, link, tmp_path, asyncio.sleep)

    async def rounds() -> list[str]:
        await daemon.start_up()
        first = (await daemon.round()).result
        second = (await daemon.round()).result  # no sleep yet: recovery not due, nothing applied
        daemon._recovery_due = True  # what the loop does after its sleep
        link.offer = None
        third = (await daemon.round()).result
        return [first, second, third]

    assert asyncio.run(rounds()) == ["rollback-incomplete", "rollback-incomplete", "up-to-date"]
    assert node.tried == ["bad"] and node.recoveries == 2 and daemon.recovery is None


def test_an_unreadable_journal_refuses_the_start_naming_the_command(tmp_path: Path) -> None:
    node = Stalled(JournalUnreadable(f"{tmp_path}/journal.json: not a valid journal: truncated"))
    daemon = _daemon(node, Link(event("1.1.0", "good")), tmp_path, asyncio.sleep)
    with pytest.raises(JournalBlocked, match="zos-upgrade recover --from-backup"):
        asyncio.run(daemon.run(once=False))
    assert node.tried == []
    state = json.loads((tmp_path / "status.json").read_text())
    assert state["last_result"] == "rollback-incomplete" and RECOVER_COMMAND in state["last_error"]
