"""`zos-upgrade rollback` end to end: a sandbox node with a real hub and a real supervisord, the command
and the daemon as child processes reading their TOML config, checked from outside (the node tree,
the services' versions, the state files, exit codes).

The releases: 1.0.0's ``migrate`` writes ``/srv/data/db`` in format 1; 1.1.0's converts it to format 2
(declared in its ``hooks.paths``) and ships a ``rollback`` hook that converts it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon_node import Node
from tests.support.node import Exe, Sandbox, tree_digest
from tests.support.procs import REPO, zos_upgrade_cmd
from tests.support.supervisord import running_supervisord
from zos_upgrade.lock import DaemonLock

SKIP = ("run", "tmp", "var", "sup", "srv")  # runtime dirs, the supervisor's links, the hooks' data
MIGRATE_1 = '#!/bin/sh\nmkdir -p "$ZOS_ROOT/srv/data"\necho format-1 > "$ZOS_ROOT/srv/data/db"\n'
MIGRATE_2 = '#!/bin/sh\necho format-2 > "$ZOS_ROOT/srv/data/db"\n'
ROLLBACK_2 = ('#!/bin/sh\necho "format-1 $ZOS_TRANSACTION $ZOS_FROM_VERSION->$ZOS_TO_VERSION" '
              '> "$ZOS_ROOT/srv/data/db"\n')
BROKEN_ROLLBACK = '#!/bin/sh\necho half-converted > "$ZOS_ROOT/srv/data/db"\nexit 1\n'


class RollbackNode(Node):
    hub: contextlib.ExitStack

    def run(self, *args: str, crash_at: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "ZOS_UPGRADE_CRASH_AT"}
        if crash_at:
            env["ZOS_UPGRADE_CRASH_AT"] = crash_at
        return subprocess.run(zos_upgrade_cmd("--log-format", "json", *args, "--config", str(self.config)),
                              capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO, env=env)

    def rollback(self, crash_at: str = "") -> subprocess.CompletedProcess[str]:
        return self.run("rollback", crash_at=crash_at)

    def offline(self) -> None:
        """No way to download anything: the hub stopped, the dir:// store the flists name moved away."""
        self.hub.close()
        self.box.blocks.rename(self.box.blocks.with_name("blocks-away"))

    def online(self) -> None:
        self.box.blocks.with_name("blocks-away").rename(self.box.blocks)
        self.hub = contextlib.ExitStack()
        self.hub.enter_context(self.box.serving_hub())
        self.write_config()  # the hub's new port

    def db(self) -> str:
        return (self.root / "srv/data/db").read_text().strip()

    def json_file(self, name: str) -> Any:
        return json.loads((self.state / name).read_text())

    def held(self) -> list[str]:
        path = self.state / "failed-releases.json"
        return [r["version"] for r in json.loads(path.read_text())["releases"]] if path.exists() else []

    def upgraded(self, *, rollback_hook: str = ROLLBACK_2) -> tuple[dict[str, str], dict[str, str]]:
        """1.0.0 then 1.1.0 installed by the daemon; the tree of each."""
        self.release("1.0.0", extra={"opt/app/only-1.0.txt": "old", "migrate": Exe(MIGRATE_1)})
        assert self.once().returncode == 0
        old = tree_digest(self.root, exclude=SKIP)
        self.release("1.1.0", extra={"opt/app/only-1.1.txt": "new", "migrate": Exe(MIGRATE_2),
                                     "rollback": Exe(rollback_hook), "hooks.paths": "/srv/data/db\n"})
        assert self.once().returncode == 0
        assert self.box.wait_version("alpha", "1.1.0") == "1.1.0" and self.db() == "format-2"
        return old, tree_digest(self.root, exclude=SKIP)


@pytest.fixture
def node() -> Iterator[RollbackNode]:
    base = Path(tempfile.mkdtemp(prefix="zu-rb-", dir="/tmp"))  # short: supervisord's socket path
    try:
        box = Sandbox(base)
        with running_supervisord() as sd, contextlib.ExitStack() as stack:
            hub = contextlib.ExitStack()
            hub.enter_context(box.serving_hub())
            stack.callback(lambda: n.hub.close())
            box.expose_supervisor(sd.socket_path, sd.include_dir)
            n = RollbackNode(box, sd, base / "zos-upgrade.toml")
            n.hub = hub
            n.write_config()
            yield n
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_rollback_after_an_upgrade_downloads_nothing_and_the_daemon_does_not_move_forward(
        node: RollbackNode) -> None:
    old, _new = node.upgraded()
    node.offline()
    proc = node.rollback()
    assert proc.returncode == 0, proc.stderr
    assert "rolled back from 1.1.0 to 1.0.0" in proc.stdout and "0 bytes downloaded" in proc.stdout
    assert "clear-failed 1.1.0" in proc.stdout
    assert tree_digest(node.root, exclude=SKIP) == old  # the old release's files, exactly
    assert node.box.wait_version("alpha", "1.0.0") == "1.0.0" and node.box.wait_version("beta", "1.0.0")
    # 1.1.0's rollback hook ran (its hooks.paths' data); 1.0.0's migrate did not run again after it
    assert node.db() == "format-1 rollback 1.1.0->1.0.0"
    last = node.json_file("last-transaction.json")
    assert (last["kind"], last["result"], last["from_version"], last["to_version"]) == (
        "rollback", "committed", "1.1.0", "1.0.0")
    assert node.json_file("manifests/boot.json")["version"] == "1.0.0"
    assert node.json_file("manifests/previous/boot.json")["version"] == "1.1.0"
    assert node.held() == ["1.1.0"] and not (node.state / "journal.json").exists()

    node.online()  # the hub still links 1.1.0 as latest
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert "transaction starts" not in proc.stderr
    status = node.status()
    assert status["last_result"] == "held" and status["current_version"] == "1.0.0"
    assert tree_digest(node.root, exclude=SKIP) == old


def test_rollback_twice_goes_back_again_and_forgets_the_hold(node: RollbackNode) -> None:
    _old, new = node.upgraded()
    node.offline()
    assert node.rollback().returncode == 0
    proc = node.rollback()
    assert proc.returncode == 0, proc.stderr
    assert "rolled back from 1.0.0 to 1.1.0" in proc.stdout and "0 bytes downloaded" in proc.stdout
    assert tree_digest(node.root, exclude=SKIP) == new
    assert node.box.wait_version("beta", "1.1.0") == "1.1.0"
    assert node.held() == ["1.0.0"]  # 1.1.0 chosen again by the operator; 1.0.0 rolled back from
    assert node.json_file("manifests/previous/boot.json")["version"] == "1.0.0"
    # 1.0.0 ships no rollback hook, and 1.1.0's forward migrate does not run in a rollback
    assert node.db() == "format-1 rollback 1.1.0->1.0.0"


def test_rollback_refuses_without_a_previous_release_or_beside_the_daemon(node: RollbackNode) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    proc = node.rollback()
    assert proc.returncode == 1
    assert "RollbackRefused" in proc.stderr and "no previous release to roll back to" in proc.stderr
    assert "manifests/previous/boot.json" in proc.stderr
    node.release("1.1.0")
    assert node.once().returncode == 0
    before = tree_digest(node.root, exclude=SKIP)
    with DaemonLock(node.state):  # a daemon runs
        proc = node.rollback()
    assert proc.returncode == 1 and "holds the lock" in proc.stderr
    (node.state / "flists" / node.json_file("manifests/previous/boot.json")["md5"]).write_bytes(b"x")
    proc = node.rollback()
    assert proc.returncode == 1 and "RollbackRefused" in proc.stderr and "changed since" in proc.stderr
    assert node.json_file("manifests/boot.json")["version"] == "1.1.0"
    assert tree_digest(node.root, exclude=SKIP) == before and node.held() == []  # refused: unchanged
    bad = node.run("rollback", "--bogus")
    assert bad.returncode == 2


def test_a_failing_rollback_rolls_itself_back(node: RollbackNode) -> None:
    _old, new = node.upgraded(rollback_hook=BROKEN_ROLLBACK)
    proc = node.rollback()
    assert proc.returncode == 1
    assert "RolledBack" in proc.stderr and "rollback" in proc.stderr
    assert tree_digest(node.root, exclude=SKIP) == new and node.db() == "format-2"  # data restored too
    assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
    assert node.held() == [] and node.json_file("last-transaction.json")["result"] == "rolled-back"


@pytest.mark.parametrize(("point", "lands_on"), [("mid-apply", "1.1.0"), ("after-manifest", "1.0.0")])
def test_a_crash_mid_rollback_is_recovered_to_one_whole_release(
        node: RollbackNode, point: str, lands_on: str) -> None:
    old, new = node.upgraded()
    proc = node.rollback(crash_at=point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (node.state / "journal.json").exists()
    again = node.rollback()
    assert again.returncode == 1 and "an unfinished transaction exists" in again.stderr
    proc = node.once()  # the next start recovers (back before the commit point, forward after it)
    assert proc.returncode == 0, proc.stderr
    assert not (node.state / "journal.json").exists()
    assert tree_digest(node.root, exclude=SKIP) == (new if lands_on == "1.1.0" else old)
    assert node.box.wait_version("alpha", lands_on) == lands_on
    assert node.json_file("manifests/boot.json")["version"] == lands_on
    # the roll-forward is idempotent: the previous manifest is the one the rollback replaced, once
    assert node.json_file("manifests/previous/boot.json")["version"] == ("1.0.0" if lands_on == "1.1.0"
                                                                          else "1.1.0")
    # committed: 1.1.0 held, so the daemon's round does not move forward to it again
    assert node.held() == ([] if lands_on == "1.1.0" else ["1.1.0"])
