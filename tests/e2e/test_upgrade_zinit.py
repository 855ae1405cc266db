"""The same transaction on zinit (the emulator: real child processes, zinit's protocol and states).

Under zinit the release's ``etc/zinit/*.yaml`` are the service configs themselves, so rollback must
give them back byte for byte along with every other file.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.node import (
    Exe,
    Sandbox,
    install_hub_flist,
    leftovers,
    run_child,
    service_release,
    tree_digest,
)
from tests.support.zinit_emulator import running_zinit
from zos_upgrade.supervisor import StateFamily
from zos_upgrade.supervisor.zinit import ZinitClient
from zos_upgrade.upgrade import UpgradeFailed


@pytest.fixture
def zinit(tmp_path: Path) -> Iterator[tuple[Sandbox, Path]]:
    box = Sandbox(tmp_path)
    with running_zinit(box.root) as sock, box.serving_hub():
        yield box, sock


async def install(box: Sandbox, sock: Path, fqdn: str) -> object:
    async with box.hub_client() as hub:
        return await install_hub_flist(box.upgrader(ZinitClient(sock, root=box.root)), hub, fqdn)


def running(sock: Path, root: Path, name: str) -> bool:
    return asyncio.run(ZinitClient(sock, root=root).status(name)).family is StateFamily.RUNNING


def test_zinit_upgrade_then_failed_probation_rolls_back_byte_identical(zinit: tuple[Sandbox, Path]) -> None:
    box, sock = zinit
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sock, "tf-zos/zos:1.0.0.fl"))
    assert box.wait_version("beta", "1.0.0") == "1.0.0"
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", services=("alpha", "beta", "delta")))
    report = asyncio.run(install(box, sock, "tf-zos/zos:1.1.0.fl"))
    assert sorted(report.services_restarted) == ["alpha", "beta", "delta"]  # type: ignore[attr-defined]
    assert box.wait_version("delta", "1.1.0") == "1.1.0"
    good = tree_digest(box.root)
    box.pack("zos:1.2.0.fl", service_release(box.root, "1.2.0", services=("alpha", "beta"), crash=("alpha",)))
    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(install(box, sock, "tf-zos/zos:1.2.0.fl"))
    assert failed.value.step == "probation"
    assert tree_digest(box.root) == good
    for name in ("alpha", "beta", "delta"):
        assert box.wait_version(name, "1.1.0") == "1.1.0"
        assert running(sock, box.root, name)
    assert leftovers(box) == []


def test_zinit_crash_mid_apply_recovers_to_old(zinit: tuple[Sandbox, Path]) -> None:
    box, sock = zinit
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sock, "tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    extra = {"opt/app/a.txt": "a", "opt/b.txt": "b"}
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra=extra))
    run = run_child(box, "upgrade", to="tf-zos/zos:1.1.0.fl", socket=sock, zinit=True, crash_at="mid-apply")
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert tree_digest(box.root) != before  # the crash really left a half-applied node
    again = run_child(box, "recover", socket=sock, zinit=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert tree_digest(box.root) == before
    assert box.wait_version("alpha", "1.0.0") == "1.0.0" and running(sock, box.root, "alpha")
    assert leftovers(box) == []


@pytest.mark.parametrize(("status", "ok"), [(0, True), (5, False)], ids=["oneshot-succeeds", "oneshot-fails"])
def test_zinit_oneshot_service_must_end_in_success(
    zinit: tuple[Sandbox, Path], status: int, ok: bool
) -> None:
    box, sock = zinit
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sock, "tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    extra = {
        "opt/app/init.sh": Exe(
            f"#!/bin/sh\nmkdir -p {box.root}/run\necho init > {box.root}/run/init.done\nexit {status}\n"
        ),
        "etc/zinit/init.yaml": f"exec: {box.root}/opt/app/init.sh\noneshot: true\n",
    }
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra=extra))
    if ok:
        report = asyncio.run(install(box, sock, "tf-zos/zos:1.1.0.fl"))
        assert "init" in report.services_restarted  # type: ignore[attr-defined]
        assert (box.root / "run/init.done").exists()
        return
    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(install(box, sock, "tf-zos/zos:1.1.0.fl"))
    assert failed.value.step == "probation" and "oneshot service init did not succeed" in failed.value.reason
    assert tree_digest(box.root) == before
    assert box.wait_version("alpha", "1.0.0") == "1.0.0" and running(sock, box.root, "alpha")
