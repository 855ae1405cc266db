"""A release's ``compatible`` tag against the node's ``[node] compatible`` (issue 18 item 5), end to
end: a real hub subprocess, a real supervisord, releases packed with ``--tag compatible=...``.

A release for other nodes is refused at the fetch step BEFORE any block is fetched: its blocks are
packed into a store nobody serves, so a block fetch could only fail with another error, and the
node's block cache gains nothing. The node, its state and its services stay as they were.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.e2e.test_preflight import state_files
from tests.e2e.upgrading import client, install
from tests.support.node import Sandbox, leftovers, service_release, tree_digest
from tests.support.supervisord import RunningSupervisord
from zos_upgrade.supervisor import StateFamily
from zos_upgrade.upgrade import ReleaseRefused, UpgradeReport
from zos_upgrade.upgrade.outcome import LAST_RESULT

NEXT = "tf-zos/zos:1.1.0.fl"


def cached_blocks(box: Sandbox) -> set[str]:
    cache = box.state / "cache" / "blocks"
    return {p.name for p in cache.rglob("*") if p.is_file()} if cache.exists() else set()


def refused(box: Sandbox, sd: RunningSupervisord, node: str | None, tag: str) -> ReleaseRefused:
    """Install 1.0.0 on a node named ``node``, then try 1.1.0 tagged ``tag`` whose blocks nobody serves."""
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl", compatible=node))
    unserved = box.base / "unserved-blocks"
    unserved.mkdir()
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra={"opt/app/new.txt": "new"}),
             tags={"compatible": tag}, blocks=unserved)
    tree, state, blocks = tree_digest(box.root), state_files(box), cached_blocks(box)
    with pytest.raises(ReleaseRefused) as failed:
        asyncio.run(install(box, sd, NEXT, compatible=node))
    assert failed.value.step == "fetch", failed.value.reason
    assert "IncompatibleRelease" in failed.value.reason
    assert tree_digest(box.root) == tree
    assert cached_blocks(box) == blocks  # not one block of 1.1.0 fetched
    # only the verified flist file itself was downloaded (flists/<md5>): no new mount, no journal
    assert {p for p in state_files(box) - state if not p.startswith("flists/")} == set()
    assert leftovers(box) == []
    result = json.loads((box.state / LAST_RESULT).read_text())
    assert result["result"] == "refused" and result["step"] == "fetch"
    assert box.version_file("beta") == "1.0.0"
    assert asyncio.run(client(sd).status("beta")).family is StateFamily.RUNNING
    return failed.value


def test_a_release_for_other_nodes_is_refused_before_its_blocks(box: Sandbox, sd: RunningSupervisord) -> None:
    failed = refused(box, sd, "zos-x86", "zos-arm64")
    assert "compatible='zos-arm64'" in failed.reason and "compatible='zos-x86'" in failed.reason


def test_a_node_without_a_name_takes_no_tagged_release(box: Sandbox, sd: RunningSupervisord) -> None:
    failed = refused(box, sd, None, "zos-x86")
    assert "declares no compatible name" in failed.reason and "[node] compatible" in failed.reason


def test_a_release_listing_the_node_is_installed(box: Sandbox, sd: RunningSupervisord) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"), tags={"compatible": "zos-arm64, zos-x86"})
    report = asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl", compatible="zos-x86"))
    assert isinstance(report, UpgradeReport) and report.to_version == "1.0.0"
    assert box.wait_version("beta", "1.0.0") == "1.0.0"


def test_an_untagged_release_is_for_every_node(box: Sandbox, sd: RunningSupervisord) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl", compatible="zos-x86"))
    assert box.wait_version("alpha", "1.0.0") == "1.0.0"
