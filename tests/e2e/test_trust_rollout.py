"""Issue 20 item 3 end to end: a phased rollout plan signed in the TUF metadata, followed by a node
under a real supervisord through the forging proxy and our hub (``trust_node`` fixtures).

* the plan comes only from the verified targets: the node's bucket is above the current percentage,
  so it waits (the daemon in this process, injected clock), then upgrades once the plan covers it;
* a proxy that rewrites the plan in the targets metadata to 100 % is refused by the trust layer
  (``ForgedMetadata``) and the node is unchanged: nothing on the path can speed a rollout up.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.daemon_node import clean_env
from tests.e2e.test_fleet_rollout import Clock, in_process_daemon
from tests.e2e.trust_node import LINK_NAME, TrustedNode, trust_cli, trusted_node
from tests.support.node import REPO_NAME
from tests.support.procs import REPO, zos_upgrade_cmd
from zos_upgrade.rollout import bucket

NODE_ID = "node-7"
START = datetime(2026, 11, 30, tzinfo=UTC)
RAMP = 10_000  # seconds from 0 % to 100 %


@pytest.fixture
def tn() -> Iterator[TrustedNode]:
    with trusted_node() as node:
        cfg = node.node.config
        cfg.write_text(cfg.read_text().replace("[node]\n", f'[node]\nid = "{NODE_ID}"\n', 1))
        yield node


def plan(tn: TrustedNode, start: datetime, duration: int) -> Path:
    path = tn.node.box.base / "plan.json"
    path.write_text(json.dumps({"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "duration": duration,
                                "failure_threshold": 5}))
    return path


def phased(tn: TrustedNode, version: str, plan_file: Path) -> None:
    """Release ``version`` signed, the signed link moved to it with the plan of that move."""
    tn.publish(version, link=False)
    trust_cli("link", "--dir", tn.repo, LINK_NAME, f"zos:{version}.fl", "--rollout", plan_file)
    tn.node.box.link(LINK_NAME, f"zos:{version}.fl")
    tn.sync()


def test_a_node_waits_for_its_bucket_then_upgrades(tn: TrustedNode) -> None:
    tn.publish("1.0.0")
    assert tn.node.once().returncode == 0
    assert tn.node.box.wait_version("alpha", "1.0.0") == "1.0.0"
    phased(tn, "1.1.0", plan(tn, START, RAMP))
    mine = bucket(NODE_ID, "1.1.0")
    admitted_at = START.timestamp() + RAMP * mine / 100
    clock = Clock(admitted_at - 5)
    daemon, close = in_process_daemon(tn.node, clock)  # no plans given: the TUF metadata's

    async def run() -> None:
        try:
            await daemon.start_up()
            outcome = await daemon.round()
            assert outcome.result == "waiting", outcome.detail
            assert f"bucket is {mine:.1f}" in outcome.detail and "phased rollout at" in outcome.detail
            assert tn.node.box.version_file("alpha") == "1.0.0"
            state = tn.node.status()
            assert state["last_result"] == "waiting" and "reaches it around" in state["last_error"]
            # what a person sees meanwhile (docs/operations.md 11.4 quotes it)
            shown = subprocess.run(zos_upgrade_cmd("status", "--config", str(tn.node.config)),
                                   capture_output=True, text=True, timeout=60, check=True, cwd=REPO,
                                   env=clean_env()).stdout
            words = " ".join(shown.split())  # the text wraps long values
            assert "last result: waiting" in words and f"this node's bucket is {mine:.1f}" in words, shown
            clock.now = admitted_at + 5
            outcome = await daemon.round()
            assert outcome.result == "upgraded", outcome.detail
            assert tn.node.box.wait_version("alpha", "1.1.0") == "1.1.0"
        finally:
            await close()

    asyncio.run(run())
    assert tn.node.status()["last_result"] == "upgraded"


def test_a_plan_rewritten_to_100_percent_on_the_path_is_refused(tn: TrustedNode) -> None:
    tn.publish("1.0.0")
    assert tn.node.once().returncode == 0
    # a rollout that has not begun (it starts in 2099): the real daemon, real clock, must wait
    phased(tn, "1.1.0", plan(tn, datetime(2099, 1, 1, tzinfo=UTC), RAMP))
    before = tn.digest()
    proc = tn.node.once()
    assert proc.returncode == 0, proc.stderr
    assert tn.node.status()["last_result"] == "waiting", tn.node.status()
    assert tn.digest() == before

    # the proxy serves the same targets with the plan rewritten to 100 % from 2026
    targets = tn.latest_targets()
    forged = json.loads(targets.read_text())
    custom = forged["signed"]["targets"][LINK_NAME]["custom"]["zos"]
    custom["rollout"] = {"start": "2026-01-01T00:00:00Z", "duration": 0}
    forged_file = tn.node.box.base / "forged.targets.json"
    forged_file.write_text(json.dumps(forged))
    tn.forge({f"/tuf/{REPO_NAME}/metadata/{targets.name}": {"file": str(forged_file)}})
    # a fresh cache: the node must fetch (and so verify) the targets again, as a new node would
    for cached in (tn.node.state / "trust" / REPO_NAME).glob("*targets.json"):
        cached.unlink()
    proc = tn.node.once()
    log = proc.stdout + proc.stderr
    assert "ForgedMetadata" in log and "forged metadata" in log, log[-3000:]
    assert f"/tuf/{REPO_NAME}/metadata/{targets.name}" in tn.seen()
    assert tn.digest() == before, "the node's files changed"
    assert tn.node.box.version_file("alpha") == "1.0.0"
    assert tn.trust_status()["error"]["type"] == "ForgedMetadata"
    assert tn.node.status()["last_result"] == "error"

    # the proxy stops forging: the signed plan holds the node back again
    tn.forge({})
    assert tn.node.once().returncode == 0
    assert tn.node.status()["last_result"] == "waiting"
    assert tn.digest() == before
