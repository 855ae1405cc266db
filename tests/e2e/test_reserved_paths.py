"""A release may never write the upgrader's own state or the supervisor's files: refused at plan
time by a real daemon (real hub, real supervisord), the node unchanged, the lock still held."""

from __future__ import annotations

import json
import signal

import pytest

from tests.e2e.daemon_node import STATE, Node, wait_for
from tests.support.node import tree_digest
from tests.support.procs import stop_process

OWN_STATE = "the upgrader's state directory"
RUNTIME = ("run", "tmp", "var", "sup")  # var holds the state dir: its status files change every round


def _state_files(box: Node) -> dict[str, str]:
    """The upgrader's own records that a refused release must leave alone (not status.json)."""
    return {k: v for k, v in tree_digest(box.state).items()
            if k.split("/")[0] in ("manifests", "daemon.lock") or k == "daemon.lock"}


@pytest.mark.parametrize(
    ("shipped", "what"),
    [
        ({f"{STATE[1:]}/daemon.lock": "", f"{STATE[1:]}/status.json": "{}"}, OWN_STATE),
        ({f"{STATE[1:]}/manifests/boot.json": "{}"}, OWN_STATE),
        ({"sup/conf.d/evil.conf": "[program:evil]\ncommand=/bin/true\n"},
         "the folder of supervisord's rendered program configs"),
    ],
    ids=["lock-and-status", "manifest", "supervisord-include-dir"],
)
def test_release_shipping_reserved_files_is_refused_and_the_lock_stays_held(
    node: Node, shipped: dict[str, str], what: str
) -> None:
    node.release("1.0.0")
    daemon = node.start()
    try:
        wait_for(lambda: node.status()["current_version"] == "1.0.0", what="the first install")
        lock = node.state / "daemon.lock"
        lock_before = (lock.stat().st_ino, lock.read_bytes())
        tree_before, state_before = tree_digest(node.root, exclude=RUNTIME), _state_files(node)
        include_before = tree_digest(node.sd.include_dir)

        node.release("1.1.0", extra={"opt/app/new.txt": "new", **shipped})
        wait_for(lambda: "may never write" in (node.status().get("last_error") or ""), what="the refusal")
        status = node.status()
        assert status["current_version"] == "1.0.0", status
        assert "PlanRefused" in status["last_error"] and f"lies in {what}" in status["last_error"]

        # nothing changed: node tree, the upgrader's records, the supervisor's folder, the lock
        assert tree_digest(node.root, exclude=RUNTIME) == tree_before
        assert not (node.root / "opt/app/new.txt").exists()
        assert _state_files(node) == state_before
        assert tree_digest(node.sd.include_dir) == include_before
        assert json.loads((node.root / "tmp/flist.info").read_text())["target"] == "zos:1.0.0.fl"
        assert (lock.stat().st_ino, lock.read_bytes()) == lock_before
        assert node.box.wait_version("alpha", "1.0.0") == "1.0.0"

        # the first daemon still holds the node: a second one is refused
        second = node.once()
        assert second.returncode == 1
        assert f"pid {daemon.pid}" in second.stderr and "daemon.lock" in second.stderr
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
    finally:
        stop_process(daemon)
