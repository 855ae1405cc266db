"""Crash the upgrade at every named point (SIGKILL in a child process), then recover in a fresh one.

After recovery the node must be exactly on the old release or exactly on the new one: the tree
(byte for byte, modes included), the boot files and the running services all agree. The releases
differ in the upgrader's own program too, so the self-update path and its continuation are crashed
as well. A fast subset runs in the normal suite; the full sweep is ``@pytest.mark.fault``.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.upgrading import client
from tests.support.node import (
    Exe,
    Sandbox,
    install_hub_flist,
    leftovers,
    run_child,
    service_release,
    tree_digest,
)
from tests.support.supervisord import RunningSupervisord, running_supervisord
from zos_upgrade.supervisor import StateFamily
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.upgrade import CRASH_POINTS

OLD, NEW = "1.0.0", "1.1.0"
FAST = ("after-self-update", "mid-apply", "after-manifest")


@dataclass
class Node:
    box: Sandbox
    sd: RunningSupervisord
    digests: dict[str, dict[str, str]]
    current: str


def release(root: Path, version: str) -> dict[str, object]:
    return service_release(root, version, services=("alpha", "beta", "gamma"), extra={
        "bin/zos-upgrade": Exe(f"#!/bin/sh\necho {version}\n"),
        f"opt/app/only-{version}.txt": version,          # added by one release, removed by the other
        "etc/app.conf": f"version={version}\n",          # replaced
        "migrate": Exe("#!/bin/sh\nexit 0\n"),
    })


async def _install(box: Sandbox, sd: RunningSupervisord, fqdn: str) -> None:
    async with box.hub_client() as hub:
        await install_hub_flist(box.upgrader(client(sd), self_update=False), hub, fqdn)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    box = Sandbox(tmp_path)
    with running_supervisord() as sd, box.serving_hub():
        digests = {}
        for version in (OLD, NEW):
            box.pack(f"zos:{version}.fl", release(box.root, version))  # type: ignore[arg-type]
            asyncio.run(_install(box, sd, f"tf-zos/zos:{version}.fl"))
            assert box.wait_version("gamma", version) == version
            digests[version] = tree_digest(box.root)
        assert digests[OLD] != digests[NEW]
        yield Node(box, sd, digests, NEW)


def crash_and_recover(node: Node, point: str) -> str:
    """Upgrade to the other release, crashing at ``point``; recover; return the version converged to."""
    box, sd = node.box, node.sd
    target = OLD if node.current == NEW else NEW
    common = {"socket": sd.socket_path, "include": sd.include_dir}
    run = run_child(box, "upgrade", to=f"tf-zos/zos:{target}.fl", crash_at=point, **common)  # type: ignore[arg-type]
    if run.returncode == 3:  # RestartNeeded came first: the restarted program carries on (and crashes)
        run = run_child(box, "recover", crash_at=point, **common)  # type: ignore[arg-type]
    assert run.returncode == -signal.SIGKILL, f"{point}: rc={run.returncode}\n{run.stderr[-3000:]}"
    again = run_child(box, "recover", **common)  # type: ignore[arg-type]
    assert again.returncode == 0, again.stderr[-3000:]
    tree = tree_digest(box.root)
    matches = [v for v, digest in node.digests.items() if digest == tree]
    assert matches, f"after a crash at {point} the node is neither {OLD} nor {NEW}"
    version = matches[0]
    assert json.loads((box.root / "tmp/flist.info").read_text())["name"] == f"zos:{version}.fl"
    for name in ("alpha", "beta", "gamma"):
        assert box.wait_version(name, version) == version, (point, name)
        assert asyncio.run(client(sd).status(name)).family is StateFamily.RUNNING, (point, name)
    assert leftovers(box) == [], point
    node.current = version
    return version


# The commit point is the journal's move to "committed": crashes after it roll forward, crashes
# before it roll back, except after the self-update, where the restarted program continues forward.
ROLLS_FORWARD = frozenset({"after-self-update", "after-manifest", "after-boot-files"})


def expected(point: str, old: str, new: str) -> str:
    return new if point in ROLLS_FORWARD else old


def test_fast_subset_of_crash_points_converges(node: Node) -> None:
    for point in FAST:
        old = node.current
        new = OLD if old == NEW else NEW
        assert crash_and_recover(node, point) == expected(point, old, new), point


def test_crash_during_rollback_then_recovery_still_converges_to_old(node: Node) -> None:
    box = node.box
    box.pack("zos:2.0.0.fl", service_release(box.root, "2.0.0", services=("alpha", "beta", "gamma"), extra={
        "bin/zos-upgrade": Exe(f"#!/bin/sh\necho {NEW}\n"),  # same program: no self-update
        "etc/app.conf": "version=2.0.0\n",
        "migrate": Exe("#!/bin/sh\nexit 9\n"),
    }))
    common = {"socket": node.sd.socket_path, "include": node.sd.include_dir}
    run = run_child(box, "upgrade", to="tf-zos/zos:2.0.0.fl", crash_at="mid-rollback", **common)  # type: ignore[arg-type]
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    again = run_child(box, "recover", **common)  # type: ignore[arg-type]
    assert again.returncode == 0, again.stderr[-2000:]
    assert "rolled back to 1.1.0" in again.stdout
    assert tree_digest(box.root) == node.digests[NEW]
    assert box.wait_version("alpha", NEW) == NEW
    assert leftovers(box) == []


@pytest.mark.fault
def test_every_crash_point_converges(node: Node) -> None:
    for point in CRASH_POINTS:
        old = node.current
        new = OLD if old == NEW else NEW
        assert crash_and_recover(node, point) == expected(point, old, new), point


def test_rollback_that_cannot_reach_the_supervisor_is_retried_by_the_next_recovery(node: Node) -> None:
    from zos_upgrade.upgrade import RollbackIncomplete
    from zos_upgrade.upgrade.journal import Journal, Phase

    box, sd = node.box, node.sd
    common = {"socket": sd.socket_path, "include": sd.include_dir}
    run = run_child(box, "upgrade", to=f"tf-zos/zos:{OLD}.fl", crash_at="after-stop", **common)  # type: ignore[arg-type]
    if run.returncode == 3:
        run = run_child(box, "recover", crash_at="after-stop", **common)  # type: ignore[arg-type]
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]

    async def recover(socket: Path) -> str | None:
        sup = SupervisordClient(socket, include_dir=sd.include_dir, timeout=2)
        return await box.upgrader(sup).recover()

    with pytest.raises(RollbackIncomplete) as failed:
        asyncio.run(recover(box.base / "no-such.sock"))
    assert "rollback failed" in failed.value.reason
    record = Journal(box.state).load()
    assert record is not None and record.phase is Phase.ROLLING_BACK  # kept for the next attempt
    assert asyncio.run(recover(sd.socket_path)) is not None
    assert tree_digest(box.root) == node.digests[NEW]
    for name in ("alpha", "beta", "gamma"):
        assert asyncio.run(client(sd).status(name)).family is StateFamily.RUNNING
    assert leftovers(box) == []
