"""What the supervisord end-to-end tests share: a client of the fixture's supervisord, and one
boot upgrade through a fresh Upgrader (first install when the node has none)."""

from __future__ import annotations

from tests.support.node import Sandbox, install_hub_flist
from tests.support.supervisord import RunningSupervisord
from zos_upgrade.supervisor.supervisord import SupervisordClient


def client(sd: RunningSupervisord) -> SupervisordClient:
    return SupervisordClient(sd.socket_path, include_dir=sd.include_dir, start_seconds=0)


async def install(box: Sandbox, sd: RunningSupervisord, fqdn: str, **options: object) -> object:
    async with box.hub_client() as hub:
        return await install_hub_flist(box.upgrader(client(sd), **options), hub, fqdn)
