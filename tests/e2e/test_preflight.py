"""Preflight before touching anything (issue 16 item 12): real hub subprocess, real supervisord.

A wrong supervisor socket, missing trust material and a disk without room each refuse the release
(ReleaseRefused, recorded): the node tree, its state (nothing downloaded where the check runs before
the fetch) and the running services stay as they were; the hub still serves.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.upgrading import client, install
from tests.support.node import Sandbox, install_hub_flist, leftovers, service_release, tree_digest
from tests.support.supervisord import RunningSupervisord
from tests.support.zinit_emulator import short_socket_dir
from zos_upgrade.supervisor import StateFamily
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.upgrade import ReleaseRefused
from zos_upgrade.upgrade.outcome import LAST_RESULT
from zos_upgrade.upgrade.preflight import DiskSpace


def node_on_1_0_0(box: Sandbox, sd: RunningSupervisord) -> tuple[dict[str, str], set[str]]:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0"))
    return tree_digest(box.root), state_files(box)


def state_files(box: Sandbox) -> set[str]:
    return {p.relative_to(box.state).as_posix() for p in box.state.rglob("*") if p.name != LAST_RESULT}


def assert_unchanged(box: Sandbox, sd: RunningSupervisord, before: tuple[dict[str, str], set[str]],
                     failed: ReleaseRefused, step: str, words: str) -> None:
    assert failed.step == step and words in failed.reason, failed.reason
    result = json.loads((box.state / LAST_RESULT).read_text())
    assert result["result"] == "refused" and words in result["reason"]
    assert tree_digest(box.root) == before[0]
    assert state_files(box) == before[1]  # no flist downloaded, no mount, no journal
    assert leftovers(box) == []
    for name in ("alpha", "beta"):
        assert asyncio.run(client(sd).status(name)).family is StateFamily.RUNNING
    assert box.version_file("beta") == "1.0.0"
    assert httpx.get(f"{box.hub_url}/api/flist/tf-zos/zos:1.1.0.fl/light", timeout=5).status_code == 200


def test_a_wrong_supervisor_socket_refuses_before_the_fetch(box: Sandbox, sd: RunningSupervisord) -> None:
    before = node_on_1_0_0(box, sd)
    nowhere = short_socket_dir() / "supervisor.sock"
    wrong = SupervisordClient(nowhere, include_dir=sd.include_dir, start_seconds=0)

    async def run() -> object:
        async with box.hub_client() as hub:
            return await install_hub_flist(box.upgrader(wrong), hub, "tf-zos/zos:1.1.0.fl")

    with pytest.raises(ReleaseRefused) as failed:
        asyncio.run(run())
    words = f"supervisord socket {nowhere} does not exist"
    assert_unchanged(box, sd, before, failed.value, "preflight", words)
    nowhere.parent.rmdir()


def test_missing_trust_material_refuses_before_the_fetch(box: Sandbox, sd: RunningSupervisord) -> None:
    before = node_on_1_0_0(box, sd)
    key = box.root / "etc/zos/release.pub"
    with pytest.raises(ReleaseRefused) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl", trust_files=(key,)))
    assert_unchanged(box, sd, before, failed.value, "preflight", f"trust material {key} is not readable")


@pytest.mark.parametrize(("free", "inodes", "words"), [
    (10 * 1024 * 1024, 10**6, "not enough room on the file system of"),  # below the 64 MiB margin
    (10**12, 1, "not enough inodes"),
])
def test_a_disk_without_room_refuses_before_the_journal_begins(
    box: Sandbox, sd: RunningSupervisord, free: int, inodes: int, words: str
) -> None:
    before = node_on_1_0_0(box, sd)
    asked: list[Path] = []

    def full(path: Path) -> DiskSpace:
        asked.append(path)
        return DiskSpace(free_bytes=free, free_inodes=inodes, device=1)

    with pytest.raises(ReleaseRefused) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl", free_space=full))
    assert set(asked) == {box.root, box.state}
    # the fetch ran (the sizes come from the release); the node and its journal did not change
    assert failed.value.step == "plan" and words in failed.value.reason, failed.value.reason
    assert tree_digest(box.root) == before[0] and leftovers(box) == []
    assert box.version_file("beta") == "1.0.0"
    assert asyncio.run(client(sd).status("beta")).family is StateFamily.RUNNING


def test_enough_room_installs(box: Sandbox, sd: RunningSupervisord) -> None:
    node_on_1_0_0(box, sd)

    def roomy(path: Path) -> DiskSpace:
        return DiskSpace(free_bytes=65 * 1024 * 1024, free_inodes=100, device=1)

    asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl", free_space=roomy))
    assert box.wait_version("beta", "1.1.0") == "1.1.0"
