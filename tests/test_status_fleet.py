"""`zos-upgrade status` shows the node in the fleet: its id and group, the rollout strategy, when the
next maintenance window opens (from the config at this instant, or as the daemon recorded it), and
what a running transaction waits for."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from zos_upgrade.cli import cli
from zos_upgrade.cli.status import collect_status, render_text
from zos_upgrade.config import parse_config
from zos_upgrade.node.identity import load_identity
from zos_upgrade.node.state import DaemonState, write_state
from zos_upgrade.rollout.windows import WEEK

CONFIG = """
[node]
root = "{root}"
state_dir = "/state"
id = "node-7"
group = "workers"
[source]
hub = "http://127.0.0.1:9"
flist = "a/b"
[rollout]
strategy = "periodic"
[[rollout.periodic.window]]
days = ["Sat"]
start_time = "22:30"
length_minutes = 60
"""
SAT_2230 = datetime(2025, 12, 6, 22, 30, tzinfo=UTC).timestamp()
MONDAY_NOON = SAT_2230 - 5 * 86400 - 10.5 * 3600


def test_the_constants_are_what_they_say() -> None:
    assert time.strftime("%a %H:%M", time.gmtime(SAT_2230)) == "Sat 22:30"


def test_with_the_config_the_next_window_is_computed_now(tmp_path: Path) -> None:
    cfg = parse_config(CONFIG.format(root=tmp_path))
    status = collect_status(tmp_path, cfg.state_dir, cfg, MONDAY_NOON)
    assert status.fleet == {"id": "node-7", "group": "workers", "strategy": "periodic",
                            "next_window": SAT_2230, "window_closes": None, "waiting": None}
    text = render_text(status, MONDAY_NOON)
    assert "node id:        node-7" in text and "group:          workers" in text
    assert "periodic (next maintenance window opens 2025-12-06 22:30:00 UTC (in 5d)" in text
    inside = collect_status(tmp_path, cfg.state_dir, cfg, SAT_2230 + 600)
    assert inside.fleet["next_window"] == SAT_2230 + 600 and inside.fleet["window_closes"] == SAT_2230 + 3600
    assert "inside a maintenance window, it closes" in render_text(inside, SAT_2230 + 600)
    # next week's window once this one is over
    after = collect_status(tmp_path, cfg.state_dir, cfg, SAT_2230 + 3600)
    assert after.fleet["next_window"] == SAT_2230 + WEEK


def test_without_config_what_the_daemon_recorded_and_the_kept_id(tmp_path: Path) -> None:
    state = tmp_path / "var/cache/modules/upgrade"
    ident = load_identity(state, None, "default")
    result = CliRunner().invoke(cli, ["status", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["fleet"]["id"] == ident.id  # no daemon yet: the kept id
    write_state(state, DaemonState(updated=time.time(), pid=os.getpid(), node_id=ident.id, group="default",
                                   strategy="fleet_lock",
                                   waiting="waiting for a FleetLock slot (semaphore full); asking again"))
    result = CliRunner().invoke(cli, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"node id:        {ident.id}" in result.output
    assert "strategy:       fleet_lock" in result.output
    assert "waiting:        waiting for a FleetLock slot (semaphore full)" in result.output


def test_a_damaged_kept_id_is_shown_not_fatal(tmp_path: Path) -> None:
    state = tmp_path / "var/cache/modules/upgrade"
    state.mkdir(parents=True)
    (state / "node-id.json").write_text("{oops")
    result = CliRunner().invoke(cli, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "node id:        unreadable" in result.output
