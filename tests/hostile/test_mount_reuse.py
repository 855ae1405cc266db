"""A release tree staged under ``<state>/mounts`` and altered before the (re)try is never installed
as altered: the mount is rebuilt from the flist, every block checked, and the node gets the release's
own bytes (real hub, real supervisord, the real Upgrader)."""

from __future__ import annotations

import asyncio
import os
import stat

from tests.hostile.conftest import Node
from tests.support.node import event_for, service_release
from zos_upgrade.sources import HubSource


def test_a_staged_mount_altered_before_the_retry_is_rebuilt(node: Node) -> None:
    box = node.box
    box.pack("zos:2.0.0.fl", service_release(box.root, "2.0.0", extra={"etc/app.conf": "v2\n"}))
    box.link("latest.fl", "zos:2.0.0.fl")
    upgrader = node.upgrader()

    async def stage_then_alter() -> None:
        # what a failed try leaves: the fetch step's mount of the release, complete under its md5
        async with node.hub_client() as hub:
            source = HubSource(hub, upgrader.flister.downloads_dir)
            release = await source.verify(await event_for(hub, "tf-zos/zos:2.0.0.fl"), "boot")
            mount = await upgrader.flister.mount(release)
        conf = mount.path / "etc" / "app.conf"
        assert conf.read_text() == "v2\n"
        # altered between the tries: content, mode and an extra file
        os.chmod(conf.parent, 0o755)
        conf.chmod(0o644)
        conf.write_text("rm -rf /\n")
        conf.chmod(0o4777)
        (conf.parent / "planted").write_text("evil\n")

    asyncio.run(stage_then_alter())
    report = asyncio.run(node.upgrade_to("tf-zos/zos:2.0.0.fl"))

    assert report.to_version == "2.0.0"
    installed = box.root / "etc" / "app.conf"
    assert installed.read_text() == "v2\n"
    assert stat.S_IMODE(installed.stat().st_mode) & 0o7000 == 0
    assert not (box.root / "etc" / "planted").exists()
    assert box.wait_version("alpha", "2.0.0") == "2.0.0"
