"""`zos-upgrade hold|unhold|pause|resume` honoured by a RUNNING daemon (issue 18 item 4): a sandbox
node, the real hub, a real supervisord, the daemon as a child process following the hub's link; the
commands are run as an operator would, while the daemon runs, and the node is checked from outside."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

# the daemon tests' node (hub + supervisord + config) is the fixture here too; ruff reads its use as
# a parameter as a redefinition of the import
from tests.e2e.daemon_node import Node, wait_for
from tests.support.procs import stop_process
from zos_upgrade.cli import cli as zos_upgrade


def cli(node: Node, *args: str) -> Result:
    """The operator's commands, in process (they only write the state dir); the daemon is a child."""
    return CliRunner().invoke(zos_upgrade, [*args, "--config", str(node.config)])


def status_json(node: Node) -> dict[str, Any]:
    shown = cli(node, "status", "--json")
    assert shown.exit_code == 0, shown.output
    return dict(json.loads(shown.stdout))


def test_hold_is_honoured_by_the_running_daemon_until_lifted(node: Node) -> None:
    node.release("1.0.0")
    daemon = node.start()
    try:
        wait_for(lambda: node.status()["current_version"] == "1.0.0", what="the first install")
        held = cli(node, "hold")  # no VERSION: the running one
        assert held.exit_code == 0, held.output
        assert "held at 1.0.0" in held.stdout

        node.release("1.1.0")
        wait_for(lambda: node.status()["last_result"] == "held", what="a round to hold 1.1.0 back")
        state = node.status()
        assert state["current_version"] == "1.0.0" and "held at 1.0.0" in state["last_error"]
        assert node.box.version_file("alpha") == "1.0.0"
        assert not (node.state / "journal.json").exists()
        shown = cli(node, "status")
        assert "held at:        1.0.0" in shown.stdout and "zos-upgrade unhold" in shown.stdout
        assert status_json(node)["control"]["hold"]["version"] == "1.0.0"

        lifted = cli(node, "unhold")
        assert lifted.exit_code == 0 and "hold at 1.0.0 lifted" in lifted.stdout, lifted.output
        wait_for(lambda: node.status()["current_version"] == "1.1.0", what="1.1.0 after unhold")
        assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
        assert status_json(node)["control"] == {"hold": None, "pause": None}
    finally:
        stop_process(daemon)


def test_pause_is_honoured_by_the_running_daemon_until_resumed(node: Node) -> None:
    node.release("1.1.0")
    daemon = node.start()
    try:
        wait_for(lambda: node.status()["current_version"] == "1.1.0", what="the first install")
        paused = cli(node, "pause")
        assert paused.exit_code == 0 and "paused" in paused.stdout, paused.output
        assert "already paused since" in cli(node, "pause").stdout  # idempotent, keeps the first time
        node.release("1.2.0")
        wait_for(lambda: node.status()["last_result"] == "paused", what="a round to pause 1.2.0")
        assert node.status()["current_version"] == "1.1.0"
        assert node.box.version_file("alpha") == "1.1.0"
        assert "paused:         since" in cli(node, "status").stdout
        assert status_json(node)["control"]["pause"] is not None

        resumed = cli(node, "resume")
        assert resumed.exit_code == 0 and "resumed" in resumed.stdout, resumed.output
        wait_for(lambda: node.status()["current_version"] == "1.2.0", what="1.2.0 after resume")
        assert node.box.wait_version("alpha", "1.2.0") == "1.2.0"
        assert status_json(node)["control"] == {"hold": None, "pause": None}
    finally:
        stop_process(daemon)


def test_a_hold_above_the_running_release_lets_the_daemon_climb_to_it_and_no_further(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    assert cli(node, "hold", "1.1.0").exit_code == 0
    node.release("1.1.0")
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert node.status()["current_version"] == "1.1.0"  # at the hold: applied
    node.release("1.2.0")
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert "transaction starts" not in proc.stderr
    assert node.status()["last_result"] == "held" and node.status()["current_version"] == "1.1.0"


def test_bad_version_text_is_a_usage_error_and_writes_nothing(tmp_path: Path) -> None:
    def run(*args: str) -> Result:
        return CliRunner().invoke(zos_upgrade, [*args, "--root", str(tmp_path)])

    for bad in ("v1.0", "1.0", "latest", "1.0.0.0"):
        proc = run("hold", bad)
        assert proc.exit_code == 2, (bad, proc.output)
        assert "is not a semver 2.0 version" in proc.output and bad in proc.output
    assert not list(tmp_path.rglob("control.json"))
    empty = run("hold")  # nothing installed yet: no running version to hold at
    assert empty.exit_code == 1 and "no boot release is installed here" in empty.output
    assert run("unhold").stdout.strip() == "not held: nothing to lift"
    assert run("resume").stdout.strip() == "not paused: nothing to resume"
    assert not list(tmp_path.rglob("control.json"))
    gone = CliRunner().invoke(zos_upgrade, ["pause", "--root", str(tmp_path / "typo")])
    assert gone.exit_code == 1 and "is not a directory" in gone.output
    assert not (tmp_path / "typo").exists()


def test_an_unreadable_control_file_applies_nothing_and_status_says_so(node: Node) -> None:
    node.release("1.0.0")
    node.state.mkdir(parents=True, exist_ok=True)
    (node.state / "control.json").write_text('{"hold": {"version": "one", "at": 1}}')
    proc = node.once()
    assert proc.returncode == 1
    state = node.status()
    assert state["last_result"] == "error" and "control.json" in state["last_error"]
    assert not (node.root / "opt/app/VERSION").exists()
    shown = cli(node, "status")
    assert "control:        unreadable, nothing is applied" in shown.stdout
    (node.state / "control.json").unlink()
    assert node.once().returncode == 0 and node.status()["current_version"] == "1.0.0"
