"""An upgrade through the real Upgrader, hub server and supervisord: the new release's flist file
arrives as a delta from the installed one the node keeps (issue 19), and the upgrade is the same."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import pytest

from tests.e2e.upgrading import client, install
from tests.support.node import Sandbox, install_hub_flist, leftovers, service_release
from tests.support.supervisord import RunningSupervisord


def test_the_upgrade_downloads_a_delta_of_the_flist(box: Sandbox, sd: RunningSupervisord,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    files = {f"opt/app/data/{i:03d}.txt": f"file {i}\n" * 50 for i in range(40)}
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0", extra=files))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    assert box.wait_version("alpha", "1.0.0") == "1.0.0"
    changed = {**files, "opt/app/data/007.txt": "new"}
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra=changed))

    async def upgrade() -> object:
        async with box.hub_client() as hub:
            return await install_hub_flist(box.upgrader(client(sd)), hub, "tf-zos/zos:1.1.0.fl")

    with caplog.at_level(logging.INFO, "zos_upgrade.hub.client"):
        report = asyncio.run(upgrade())
    assert report.from_version == "1.0.0" and report.to_version == "1.1.0"  # type: ignore[attr-defined]
    assert box.wait_version("alpha", "1.1.0") == "1.1.0"
    assert (box.root / "opt/app/data/007.txt").read_text() == "new"
    rebuilt = [r for r in caplog.records if r.getMessage() == "flist rebuilt from delta"]
    assert len(rebuilt) == 1, caplog.messages
    new = box.state / "flists" / rebuilt[0].md5  # type: ignore[attr-defined]
    assert hashlib.md5(new.read_bytes()).hexdigest() == new.name
    assert rebuilt[0].bytes < new.stat().st_size / 2  # type: ignore[attr-defined]
    assert leftovers(box) == []
