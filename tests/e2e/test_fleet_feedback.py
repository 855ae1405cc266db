"""Fleet feedback end to end (issue 20 items 4, 5): the real daemon on a sandbox node under a real
supervisord reports each boot transaction to the real hub, does not start a release whose rollout
is halted (and reports waiting), starts it once resumed, and a release that rolls back past the
threshold halts its rollout on the hub by itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.daemon_node import Node, sandbox_node, wait_for
from tests.support.hub import NODE_SECRET, TOKEN_A
from tests.support.hub import rollout_config as hub_config
from tests.support.node import REPO_NAME, service_release
from tests.support.procs import stop_process
from zos_upgrade.hub.rollout import node_token

NODE_ID = "node-a"


@pytest.fixture
def fleet_node() -> Iterator[Node]:
    # min_reports 1: one node's rollback is enough of a sample here (the fleet simulation has 10,000)
    with sandbox_node(hub_config(threshold=10, min_reports=1, repo=REPO_NAME)) as node:
        node.write_config(upgrade=f'[report]\ntoken = "{node_token(NODE_SECRET, NODE_ID)}"\n')
        node.state.mkdir(parents=True, exist_ok=True)
        # the id the node generated and kept (node/identity.py), known beforehand to issue its token
        (node.state / "node-id.json").write_text(json.dumps({"id": NODE_ID, "created": 0.0}))
        yield node


def rollout(node: Node, version: str) -> dict[str, Any]:
    reply = httpx.get(f"{node.box.hub_url}/api/rollout/{REPO_NAME}/zos:{version}.fl", timeout=10)
    reply.raise_for_status()
    return dict(reply.json())


def test_the_daemon_reports_waits_on_a_halt_and_a_rollback_halts(fleet_node: Node) -> None:
    node, hub = fleet_node, fleet_node.box.hub_url
    owner = {"Authorization": f"bearer {TOKEN_A}"}
    node.release("1.0.0")
    daemon = node.start()
    try:
        wait_for(lambda: rollout(node, "1.0.0")["counts"]["upgraded"] == 1, what="the install's report")
        assert node.status()["current_version"] == "1.0.0"

        # 1.1.0 is halted before any node sees it: the node does not start it and says it waits
        node.box.pack("zos:1.1.0.fl", service_release(node.root, "1.1.0"))
        halted = httpx.post(f"{hub}/api/rollout/{REPO_NAME}/zos:1.1.0.fl/halt", headers=owner,
                            content=b'{"reason": "hold on"}')
        assert halted.status_code == 200, halted.text
        node.box.link("zos:latest.fl", "zos:1.1.0.fl")
        wait_for(lambda: rollout(node, "1.1.0")["counts"]["waiting"] == 1, what="the waiting report")
        status = node.status()
        assert status["current_version"] == "1.0.0" and status["last_result"] == "held"
        assert "halted on the hub (hold on)" in status["last_error"]
        assert node.box.version_file("alpha") == "1.0.0"

        resumed = httpx.post(f"{hub}/api/rollout/{REPO_NAME}/zos:1.1.0.fl/resume", headers=owner)
        assert resumed.status_code == 200
        wait_for(lambda: rollout(node, "1.1.0")["counts"] == {"waiting": 0, "upgraded": 1, "failed": 0,
                                                               "rolled-back": 0}, what="the upgrade's report")
        assert node.status()["current_version"] == "1.1.0"

        # 1.2.0 fails probation and rolls back: its report halts the rollout (1 of 1 > 10 %)
        node.release("1.2.0", crash=("beta",))
        wait_for(lambda: rollout(node, "1.2.0")["halted"], timeout=60, what="the automatic halt")
        record = rollout(node, "1.2.0")
        assert record["counts"]["rolled-back"] == 1 and record["halt"]["by"] == "auto"
        assert record["reasons"] and "beta" in record["reasons"][0]["reason"]
        assert node.status()["current_version"] == "1.1.0"
        wait_for(lambda: not list((node.state / "reports").glob("*.json")), what="an empty report queue")
    finally:
        stop_process(daemon)
