"""Bad inputs and the other transaction kinds: self-update, bins packages, publisher mode, full disk.

Real hub server subprocess, real supervisord; the node root is a sandbox directory (a small tmpfs
for the full-disk case when this machine lets us mount one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.upgrading import client, install
from tests.support.node import (
    BINS_REPO,
    Exe,
    Sandbox,
    install_hub_flist,
    leftovers,
    service_release,
    service_yaml,
    tree_digest,
)
from tests.support.supervisord import RunningSupervisord
from zos_upgrade.fsutil import TEMP_MARK
from zos_upgrade.node.events import ReleaseEvent
from zos_upgrade.publisher.base import Upgrade
from zos_upgrade.publisher.signing import file_hash
from zos_upgrade.sources import PublisherSource
from zos_upgrade.supervisor import StateFamily, UnknownService
from zos_upgrade.supervisor.zinit import ZinitClient
from zos_upgrade.upgrade import ReleaseRefused, RestartNeeded, RolledBack, UpgradeFailed
from zos_upgrade.upgrade.journal import Journal, Phase
from zos_upgrade.upgrade.preflight import DiskSpace
from zos_upgrade.versions import parse_version


def program(version: str) -> Exe:
    return Exe(f"#!/bin/sh\necho zos-upgrade {version}\n")


def test_self_update_raises_restart_needed_and_a_fresh_upgrader_continues(
    box: Sandbox, sd: RunningSupervisord
) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0", extra={"bin/zos-upgrade": program("1.0.0")}))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl", self_update=False))
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra={"bin/zos-upgrade": program("1.1.0")}))
    with pytest.raises(RestartNeeded):
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl"))
    record = Journal(box.state).load()
    assert record is not None and record.phase is Phase.SELF_UPDATED
    assert (box.root / "bin/zos-upgrade").read_text().endswith("1.1.0\n")
    assert box.version_file("alpha") == "1.0.0"  # nothing else moved yet

    async def restart() -> str | None:
        # no hub: the journal names the kept flist file, checked by md5 again
        return await box.upgrader(client(sd)).recover()

    outcome = asyncio.run(restart())
    assert outcome == "continued after self-update: committed 1.1.0"
    assert box.wait_version("alpha", "1.1.0") == "1.1.0"
    assert json.loads((box.root / "tmp/flist.info").read_text())["name"] == "zos:1.1.0.fl"
    assert leftovers(box) == []


def test_bins_package_install_then_uninstall_from_our_manifest(box: Sandbox, sd: RunningSupervisord) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    base = tree_digest(box.root)
    box.pack("tool:2.0.0.fl", {
        "usr/bin/tool": Exe("#!/bin/sh\necho tool\n"),
        "etc/zinit/toold.yaml": service_yaml(box.root, "toold"),
    }, repo=BINS_REPO)
    fqdn = f"{BINS_REPO}/tool:2.0.0.fl"

    async def install_bin() -> object:
        async with box.hub_client() as hub:
            return await install_hub_flist(box.upgrader(client(sd)), hub, fqdn, "bin")

    report = asyncio.run(install_bin())
    assert report.kind == "bin-install" and report.services_restarted == ["toold"]  # type: ignore[attr-defined]
    assert (box.root / "usr/bin/tool").read_text() == "#!/bin/sh\necho tool\n"
    assert os.access(box.root / "usr/bin/tool", os.X_OK)
    assert list(json.loads((box.root / "tmp/bins.info").read_text())) == [fqdn]
    assert asyncio.run(client(sd).status("toold")).family is StateFamily.RUNNING
    # /tmp did not survive a reboot: the boot files come back from the manifests
    names = ("flist.name", "flist.info", "bins.info")
    boot_files = {name: (box.root / "tmp" / name).read_bytes() for name in names}
    shutil.rmtree(box.root / "tmp")

    async def resync() -> None:
        box.upgrader(client(sd)).sync_boot_files()

    asyncio.run(resync())
    assert {name: (box.root / "tmp" / name).read_bytes() for name in boot_files} == boot_files
    # the hub forgets the package: uninstall must not need it
    (box.hub_root / BINS_REPO / "tool:2.0.0.fl").unlink()

    async def uninstall() -> object:
        upgrader = box.upgrader(client(sd))
        done = await upgrader.uninstall_binary(fqdn)
        assert upgrader.installed_bins() == {}
        return done

    report = asyncio.run(uninstall())
    assert report.kind == "bin-uninstall" and report.files_removed == 2  # type: ignore[attr-defined]
    assert tree_digest(box.root) == base
    assert json.loads((box.root / "tmp/bins.info").read_text()) == {}
    with pytest.raises(UnknownService):
        asyncio.run(client(sd).status("toold"))
    assert leftovers(box) == []


def test_publisher_mode_refuses_an_flist_not_matching_the_signed_hash(
    box: Sandbox, sd: RunningSupervisord
) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    flist = box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0"))
    url = f"{box.hub_url}/tf-zos/zos:1.1.0.fl"

    async def release(pinned: str) -> object:
        upgrader = box.upgrader(client(sd))
        candidate = ReleaseEvent(parse_version("1.1.0"), Upgrade(flist=url, hash=pinned, version="1.1.0"))
        return await upgrader.install_from(PublisherSource(upgrader.flister.downloads_dir), candidate, "boot")

    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(release("ab" * 32))
    assert failed.value.step == "fetch" and "HashMismatch" in failed.value.reason
    assert tree_digest(box.root) == before
    report = asyncio.run(release(file_hash(flist)))
    assert report.to_version == "1.1.0"  # type: ignore[attr-defined]
    assert (box.root / "tmp/flist.name").read_text() == "tf-zos/zos:1.1.0.fl"
    assert box.wait_version("alpha", "1.1.0") == "1.1.0"


def test_release_with_hostile_path_is_refused_and_nothing_is_written(
    box: Sandbox, sd: RunningSupervisord, tmp_path: Path
) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    flist = box.pack("zos:6.6.6.fl", service_release(box.root, "6.6.6", extra={"opt/evil": "pwned"}))
    with contextlib.closing(sqlite3.connect(flist)) as db:
        db.execute("UPDATE inode SET name = '..' WHERE name = 'evil'")
        db.commit()
    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:6.6.6.fl"))
    assert failed.value.step == "fetch" and "HostileFlist" in failed.value.reason
    assert tree_digest(box.root) == before
    assert not list(tmp_path.rglob("pwned")) and not (box.root.parent / "evil").exists()


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` at ``path`` if we may (root); yields whether it is mounted."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
    ).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def test_full_disk_during_apply_rolls_back(
    tmp_path: Path, sd: RunningSupervisord, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = Sandbox(tmp_path)
    with small_tmpfs(box.root, "2m") as mounted, box.serving_hub():
        box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0", extra={"etc/app.conf": "v1\n"}))
        # no safety margin: the preflight's own default (tens of MiB) would refuse anything on 2 MiB
        asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl", space_margin=0))
        before = tree_digest(box.root)
        big = os.urandom(3 * 1024 * 1024)  # incompressible: it cannot fit a 2 MiB file system
        box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra={
            "etc/app.conf": "v2\n", "opt/app/big.bin": big,
        }))
        if mounted:  # the preflight sees the real file system is too small: refused before any change
            with pytest.raises(ReleaseRefused) as refused:
                asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl", space_margin=0))
            assert refused.value.step == "plan" and "not enough room" in refused.value.reason
            assert tree_digest(box.root) == before
        else:  # no tmpfs here: the same failure, injected at the write
            import errno

            from zos_upgrade.upgrade import nodefs

            real = nodefs.NodeFS.put

            def put(self: nodefs.NodeFS, rel: str, staged: Path, *rest: Any) -> Path:
                if staged.name == "big.bin":
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real(self, rel, staged, *rest)

            monkeypatch.setattr(nodefs.NodeFS, "put", put)

        def plenty(path: Path) -> DiskSpace:  # the disk fills between the preflight and the apply
            return DiskSpace(free_bytes=1 << 40, free_inodes=1 << 20, device=os.stat(path).st_dev)

        with pytest.raises(UpgradeFailed) as failed:
            asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl", free_space=plenty))
        assert failed.value.step == "apply" and isinstance(failed.value, RolledBack)
        assert "No space left" in failed.value.reason
        assert tree_digest(box.root) == before
        assert box.wait_version("alpha", "1.0.0") == "1.0.0"
        assert asyncio.run(client(sd).status("alpha")).family is StateFamily.RUNNING
        result = json.loads((box.state / "last-transaction.json").read_text())
        assert result["result"] == "rolled-back" and "No space left" in result["reason"]
        assert leftovers(box) == []


def test_recovery_sweeps_temp_files_of_interrupted_config_writes(box: Sandbox,
                                                                 sd: RunningSupervisord) -> None:
    # a kill while a service's config was being written leaves its temp file in the include dir
    # (found by the random-kill campaign); recovery removes it and nothing else there
    stray = sd.include_dir / f".delta.conf{TEMP_MARK}26601-ecaac4ce"
    stray.write_text("[program:delta]\ncommand=/bin/true\n")
    kept = sd.include_dir / "notes.txt"
    kept.write_text("not ours\n")

    async def recover() -> str | None:
        return await box.upgrader(client(sd)).recover()

    assert asyncio.run(recover()) is None  # no journal: nothing else to do
    assert not stray.exists() and kept.read_text() == "not ours\n"


def test_zinit_config_temps_are_swept_from_its_config_dir(tmp_path: Path) -> None:
    configs = tmp_path / "etc" / "zinit"
    configs.mkdir(parents=True)
    (configs / "web.yaml").write_text("exec: /bin/web\n")
    stray = configs / f".web.yaml{TEMP_MARK}1-00ff00ff"
    stray.write_text("exec: /bin/w")
    swept = ZinitClient(tmp_path / "zinit.sock", root=tmp_path).sweep_config_temps()
    assert list(swept) == [stray] and not stray.exists() and (configs / "web.yaml").exists()
