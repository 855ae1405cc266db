"""End-to-end upgrades of a sandbox node: real hub server subprocess, real supervisord."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.e2e.upgrading import client, install
from tests.support.node import Exe, Sandbox, install_hub_flist, leftovers, service_release, tree_digest
from tests.support.supervisord import RunningSupervisord
from zos_upgrade.supervisor import StateFamily
from zos_upgrade.upgrade import RolledBack, UpgradeFailed
from zos_upgrade.upgrade.journal import JOURNAL_NAME


def test_first_install_then_upgrade_changes_files_and_restarts_services(
    box: Sandbox, sd: RunningSupervisord
) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0", extra={"opt/app/old.txt": "old"}))
    box.link("zos:latest.fl", "zos:1.0.0.fl")
    first = asyncio.run(install(box, sd, "tf-zos/zos:latest.fl"))
    assert box.wait_version("alpha", "1.0.0") == "1.0.0"
    assert box.wait_version("beta", "1.0.0") == "1.0.0"
    assert first.to_version == "1.0.0"  # type: ignore[attr-defined]
    assert (box.root / "tmp/flist.name").read_text() == "tf-zos/zos:latest.fl"
    info = json.loads((box.root / "tmp/flist.info").read_text())
    assert info["target"] == "zos:1.0.0.fl"

    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra={"opt/app/new.txt": "new"}))
    box.link("zos:latest.fl", "zos:1.1.0.fl")

    async def upgrade() -> object:
        async with box.hub_client() as hub:
            upgrader = box.upgrader(client(sd))
            report = await install_hub_flist(upgrader, hub, "tf-zos/zos:latest.fl")
            status = {n: await upgrader.supervisor.status(n) for n in ("alpha", "beta")}
            return report, status

    report, status = asyncio.run(upgrade())  # type: ignore[misc]
    assert report.from_version == "1.0.0" and report.to_version == "1.1.0"
    assert report.files_added == 1 and report.files_removed == 1
    assert sorted(report.services_restarted) == ["alpha", "beta"]
    assert all(s.family is StateFamily.RUNNING for s in status.values())
    assert box.wait_version("alpha", "1.1.0") == "1.1.0"
    assert (box.root / "opt/app/new.txt").read_text() == "new"
    assert not (box.root / "opt/app/old.txt").exists()
    assert json.loads((box.root / "tmp/flist.info").read_text())["target"] == "zos:1.1.0.fl"
    assert leftovers(box) == []
    assert {"fetch", "apply", "restart", "probation", "commit"} <= set(report.phases)


def test_failing_migrate_hook_rolls_back_to_byte_identical_old_release(
    box: Sandbox, sd: RunningSupervisord
) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0", extra={"etc/data.conf": "v1"}))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    assert box.wait_version("alpha", "1.0.0") == "1.0.0"
    before = tree_digest(box.root)
    boot_before = (box.root / "tmp/flist.info").read_bytes()
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra={
        "etc/data.conf": "v2", "opt/app/extra/added.bin": b"x" * 1000,
        "migrate": Exe("#!/bin/sh\necho converting >&2\nexit 7\n"),
    }))
    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl"))
    assert isinstance(failed.value, RolledBack) and failed.value.step == "migrate"
    assert "exited with status 7" in failed.value.reason
    assert tree_digest(box.root) == before
    assert (box.root / "tmp/flist.info").read_bytes() == boot_before
    assert box.wait_version("alpha", "1.0.0") == "1.0.0"
    status = asyncio.run(client(sd).status("alpha"))
    assert status.family is StateFamily.RUNNING
    result = json.loads((box.state / "last-transaction.json").read_text())
    assert result["result"] == "rolled-back" and result["step"] == "migrate"
    assert leftovers(box) == []


def test_service_failing_probation_rolls_back(box: Sandbox, sd: RunningSupervisord) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    box.pack("zos:1.2.0.fl", service_release(box.root, "1.2.0", crash=("beta",)))
    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:1.2.0.fl"))
    assert failed.value.step == "probation" and isinstance(failed.value, RolledBack)
    assert "beta" in failed.value.reason
    assert tree_digest(box.root) == before
    assert box.wait_version("beta", "1.0.0") == "1.0.0"
    for name in ("alpha", "beta"):
        assert asyncio.run(client(sd).status(name)).family is StateFamily.RUNNING
    assert leftovers(box) == []


def test_upgrade_with_migration_hook_sees_root_and_versions(box: Sandbox, sd: RunningSupervisord) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    data = box.root / "srv" / "data.txt"
    data.parent.mkdir()
    data.write_text("format=1 hello\n")
    migrate = Exe(
        "#!/bin/sh\nset -e\n"
        'f="$ZOS_ROOT/srv/data.txt"\n'
        'sed "s/format=1 \\(.*\\)/format=2 \\1 ($ZOS_FROM_VERSION->$ZOS_TO_VERSION)/" "$f" > "$f.tmp"\n'
        'mv "$f.tmp" "$f"\n'
    )
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra={"migrate": migrate}))
    report = asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl"))
    assert data.read_text() == "format=2 hello (1.0.0->1.1.0)\n"
    assert not (box.root / "migrate").exists()  # hooks never land on the node
    assert "migrate" in report.phases  # type: ignore[attr-defined]
    assert box.wait_version("alpha", "1.1.0") == "1.1.0"


@pytest.mark.parametrize(
    ("hooks", "step", "words"),
    [
        ({"pre-copy": "#!/bin/sh\nexit 0\n"}, "pre-copy", "not executable"),  # packed 0644
        ({"post-copy": Exe("#!/bin/sh\nsleep 30\n")}, "post-copy", "still running"),
    ],
    ids=["non-executable", "hanging"],
)
def test_bad_hooks_fail_cleanly_and_keep_the_old_release(
    box: Sandbox, sd: RunningSupervisord, hooks: dict[str, object], step: str, words: str
) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra=hooks))  # type: ignore[arg-type]
    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl", hook_timeout=0.5))
    assert failed.value.step == step and isinstance(failed.value, RolledBack)
    assert words in failed.value.reason
    assert tree_digest(box.root) == before
    assert box.wait_version("alpha", "1.0.0") == "1.0.0"
    assert asyncio.run(client(sd).status("alpha")).family is StateFamily.RUNNING
    assert json.loads((box.state / "last-transaction.json").read_text())["step"] == step
    assert leftovers(box) == []


def test_release_without_service_config_is_refused_before_any_change(
    box: Sandbox, sd: RunningSupervisord
) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    box.pack("zos:1.1.0.fl", {"opt/app/VERSION": "1.1.0\n"})
    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl"))
    assert failed.value.step == "plan"
    assert "no service config" in failed.value.reason
    assert tree_digest(box.root) == before
    result = json.loads((box.state / "last-transaction.json").read_text())
    assert result["result"] == "refused" and "no service config" in result["reason"]
    assert not (box.state / JOURNAL_NAME).exists()


def test_cancelled_mid_transaction_rolls_back_before_ending(box: Sandbox, sd: RunningSupervisord) -> None:
    """What the daemon's SIGTERM does to a running transaction: it is undone, then the task ends."""
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0"))

    async def cancel_during_probation() -> str:
        async with box.hub_client() as hub:
            upgrader = box.upgrader(client(sd), probation=30.0)
            task = asyncio.create_task(install_hub_flist(upgrader, hub, "tf-zos/zos:1.1.0.fl"))
            journal = box.state / JOURNAL_NAME
            for _ in range(400):
                if journal.exists() and b'"restarted"' in journal.read_bytes():
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the transaction never reached probation")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return json.loads((box.state / "last-transaction.json").read_text())["result"]

    assert asyncio.run(cancel_during_probation()) == "rolled-back"
    assert tree_digest(box.root) == before
    assert box.wait_version("alpha", "1.0.0") == "1.0.0"
    assert asyncio.run(client(sd).status("alpha")).family is StateFamily.RUNNING
    assert leftovers(box) == []
