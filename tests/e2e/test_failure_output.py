"""A service that dies in probation is reported with its own last output (issue 16 item 14).

Real hub subprocess; real supervisord, and the zinit emulator over both protocols. Release 1.1.0
adds a service that prints why it cannot run and exits: the RolledBack reason and
``last-transaction.json`` must carry that line, not only the supervisor's state. Under supervisord
every service writes one log file of a stable name, whatever the number of transactions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.upgrading import install
from tests.support.node import Exe, Sandbox, install_hub_flist, leftovers, service_release, tree_digest
from tests.support.supervisord import RunningSupervisord
from tests.support.zinit_emulator import running_zinit
from zos_upgrade.supervisor.zinit import ZinitClient, ZinitProtocol
from zos_upgrade.upgrade import RolledBack
from zos_upgrade.upgrade.outcome import LAST_RESULT

FAIL = Exe("#!/bin/sh\necho starting gamma\necho 'boom: config missing' >&2\nexit 1\n")


def broken_release(box: Sandbox) -> None:
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra={
        "opt/app/fail.sh": FAIL, "etc/zinit/gamma.yaml": f"exec: /bin/sh {box.root}/opt/app/fail.sh\n",
    }))


def assert_reported_with_output(box: Sandbox, failed: RolledBack) -> None:
    assert failed.step == "probation"
    assert "service gamma" in failed.reason and "boom: config missing" in failed.reason, failed.reason
    result = json.loads((box.state / LAST_RESULT).read_text())
    assert result["result"] == "rolled-back" and "boom: config missing" in result["reason"], result


def test_supervisord_failure_reason_carries_the_service_output_and_log_files_stay_stable(
    box: Sandbox, sd: RunningSupervisord
) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    logs = sd.include_dir / "log"
    assert sorted(p.name for p in logs.iterdir()) == ["alpha.log", "beta.log"]
    broken_release(box)
    with pytest.raises(RolledBack) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl"))
    assert_reported_with_output(box, failed.value)
    assert tree_digest(box.root) == before and leftovers(box) == []
    # the same service fails again for another reason: only this run's output is the cause
    box.pack("zos:1.1.1.fl", service_release(box.root, "1.1.1", extra={
        "opt/app/fail.sh": Exe("#!/bin/sh\necho 'boom: port 8080 taken' >&2\nexit 1\n"),
        "etc/zinit/gamma.yaml": f"exec: /bin/sh {box.root}/opt/app/fail.sh\n",
    }))
    with pytest.raises(RolledBack) as again:
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.1.fl"))
    assert "boom: port 8080 taken" in again.value.reason, again.value.reason
    assert "config missing" not in again.value.reason, again.value.reason
    assert "config missing" in (logs / "gamma.log").read_text()  # still in the file, from the first run
    # a second transaction of the same services reuses their files; supervisord's AUTO logs are unused
    box.pack("zos:1.2.0.fl", service_release(box.root, "1.2.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.2.0.fl"))
    assert sorted(p.name for p in logs.iterdir()) == ["alpha.log", "beta.log", "gamma.log"]
    assert list((sd.dir / "logs").iterdir()) == []


@pytest.fixture
def zinit_box(tmp_path: Path) -> Iterator[tuple[Sandbox, Path]]:
    box = Sandbox(tmp_path)
    with running_zinit(box.root) as sock, box.serving_hub():
        yield box, sock


@pytest.mark.parametrize("protocol", ["line", "jsonrpc"])
def test_zinit_failure_reason_carries_the_service_output(
    zinit_box: tuple[Sandbox, Path], protocol: ZinitProtocol
) -> None:
    box, sock = zinit_box

    async def install_zinit(fqdn: str) -> object:
        async with box.hub_client() as hub:
            sup = ZinitClient(sock, protocol, root=box.root)
            return await install_hub_flist(box.upgrader(sup), hub, fqdn)

    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install_zinit("tf-zos/zos:1.0.0.fl"))
    before = tree_digest(box.root)
    broken_release(box)
    with pytest.raises(RolledBack) as failed:
        asyncio.run(install_zinit("tf-zos/zos:1.1.0.fl"))
    assert_reported_with_output(box, failed.value)
    assert "starting gamma" in failed.value.reason  # stdout and stderr both
    assert tree_digest(box.root) == before and leftovers(box) == []
