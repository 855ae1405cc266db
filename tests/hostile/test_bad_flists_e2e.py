"""Every hostile flist the default limits can meet, served by a real hub as the node's next release.

The upgrader must refuse it at the fetch step (the error type and message travel in the
``UpgradeFailed`` reason) and the node must not change at all: same fingerprint, old release running.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.hostile.badflists import SUFFIX, BadFlist, Format, fresh, param_id, params
from tests.hostile.conftest import Node, assert_node_unchanged, fingerprint
from tests.support.node import BINS_REPO, REPO_NAME, Exe, install_hub_flist, write_tree
from zos_upgrade.daemon import EXIT_FAILED, EXIT_OK, BootPolicy, Daemon, NodeParts
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore, Route, Router
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.state import read_state
from zos_upgrade.sources import HubSource
from zos_upgrade.upgrade import ReleaseRefused
from zos_upgrade.versions import Version
from zos_upgrade.watch import FListSemverWatcher

CASES_BY_NAME = [case for case, _ in params()]
E2E = [(case, fmt) for case, fmt in params() if case.limits is None and case.e2e]
# `make test` runs each case once, the formats taking turns; `make test-fault` runs every pair
_NAMES = list(dict.fromkeys(case.name for case, _ in E2E))
_QUICK = {case.name: case.formats()[_NAMES.index(case.name) % len(case.formats())] for case, _ in E2E}
CASES = [pytest.param(case, fmt, marks=() if _QUICK[case.name] == fmt else pytest.mark.fault)
         for case, fmt in E2E]


@pytest.mark.parametrize(("case", "fmt"), CASES, ids=param_id)
def test_the_upgrader_refuses_a_hostile_release_and_the_node_is_unchanged(
    node: Node, case: BadFlist, fmt: Format
) -> None:
    name = f"zos:6.6.{_NAMES.index(case.name)}-{fmt}{SUFFIX[fmt]}"
    case.build[fmt](node.box.hub_root / REPO_NAME / name, DirStore(node.box.blocks))
    before = fingerprint(node.box)

    with pytest.raises(ReleaseRefused) as failed:
        asyncio.run(node.upgrade_to(f"{REPO_NAME}/{name}"))

    assert failed.value.step == "fetch"
    assert isinstance(failed.value.__cause__, case.error), repr(failed.value.__cause__)
    assert case.fragment_for(fmt) in failed.value.reason, failed.value.reason
    assert_node_unchanged(node, before)


def test_the_daemon_refuses_a_hostile_release_behind_its_link_round_after_round(node: Node) -> None:
    # the daemon's own loop (real Daemon, real watcher on the hub link): the link moves to a hostile
    # release; every round refuses it, records why, and the node stays on 1.0.0
    box = node.box
    bad = next(case for case in CASES_BY_NAME if case.name == "file-through-symlink")
    bad.build["v2"](box.hub_root / REPO_NAME / "zos:7.0.0.fl", DirStore(box.blocks))
    box.link("latest.fl", "zos:7.0.0.fl")
    before = daemon_view(node)

    async def one_round() -> int:
        async with node.hub_client() as hub:
            def watcher(current: Version) -> FListSemverWatcher:
                return FListSemverWatcher(f"{REPO_NAME}/latest.fl", 60, current, hub=hub)

            upgrader = node.upgrader()
            policy = BootPolicy(upgrader, HubSource(hub, upgrader.flister.downloads_dir), watcher)
            parts = NodeParts(upgrader=upgrader, boot=Boot(box.root), policies=[policy])
            return await Daemon(parts, state_dir=box.state, source="hostile suite").run(once=True)

    try:
        for _ in range(2):  # a refused release is neither applied nor forgotten
            assert asyncio.run(one_round()) == EXIT_FAILED
            state = read_state(box.state)
            assert state is not None and state.current_version == "1.0.0"
            assert state.last_result == "failed"  # refused before anything changed: nothing rolled back
            assert state.last_error is not None and "its parent is not a directory" in state.last_error
            assert daemon_view(node) == before
    finally:
        box.link("latest.fl", "zos:1.0.0.fl")
    assert asyncio.run(one_round()) == EXIT_OK  # the link is back on 1.0.0: up to date
    assert daemon_view(node) == before
    assert node.box.version_file("alpha") == "1.0.0"


def daemon_view(node: Node) -> dict[str, object]:
    """The fingerprint without the daemon's own bookkeeping (its status document and lock)."""
    view = fingerprint(node.box)
    state = dict(view["state"])  # type: ignore[call-overload]
    for name in ("status.json", "daemon.lock"):
        state.pop(name, None)
    return {**view, "state": state}


def test_a_package_whose_recorded_store_the_node_cannot_reach_installs_from_the_hub(node: Node) -> None:
    # `flist pack --store dir:///...` records that store in the flist; on a node that directory does
    # not exist (it was on the packing machine), but the hub serves every block at /blocks. The node
    # must fall back to the hub (blocks are verified whatever their source) instead of failing.
    box = node.box
    staging = box.base / "packing-machine-blocks"
    fqdn = f"{BINS_REPO}/tool:1.0.0.fl"
    data = fresh(999)
    url = "dir://" + staging.as_posix()
    write_tree(box.src / "routed", {"usr/bin/tool": Exe("#!/bin/sh\necho tool\n"),
                                    "usr/share/tool/data": data})
    asyncio.run(pack(box.src / "routed", box.hub_root / fqdn, Router([Route(0, 255, url)]),
                     routes=[Route(0, 255, url)]))
    for block in [p for p in staging.rglob("*") if p.is_file()]:  # the blocks now live on the hub only
        (box.blocks / block.relative_to(staging)).parent.mkdir(parents=True, exist_ok=True)
        block.rename(box.blocks / block.relative_to(staging))
    shutil.rmtree(staging)

    async def install() -> None:
        async with node.hub_client() as hub:
            await install_hub_flist(node.upgrader(), hub, fqdn, "bin")

    asyncio.run(install())
    assert (box.root / "usr/share/tool/data").read_bytes() == data
