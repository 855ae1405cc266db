"""Issue 16 item 5: answers compressed by a proxy are decoded -- JSON, flist files and blocks come out
byte for byte -- and the size limit counts decoded bytes, so a gzip bomb is stopped at the limit.

A real hub on loopback with a real release, behind a proxy that compresses every answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.hub import Hub, hub_process, place_release
from tests.support.shaping_proxy import shaping_proxy
from zos_upgrade.flist.stores import HttpStore
from zos_upgrade.hub import HubClient
from zos_upgrade.net import BadEncoding, ResponseTooLarge, RetryPolicy, fetch

FAST = RetryPolicy(attempts=2, deadline=10.0, total=20.0)
MiB = 1024 * 1024


@pytest.fixture
def hub_and_blocks(tmp_path: Path) -> Iterator[tuple[Hub, dict[str, bytes]]]:
    with hub_process(tmp_path / "hub", tmp_path, blocks=True) as hub:
        yield hub, place_release(hub, tmp_path)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_json_flists_and_blocks_through_a_compressing_proxy(
        hub_and_blocks: tuple[Hub, dict[str, bytes]], tmp_path: Path, coding: str) -> None:
    hub, blocks = hub_and_blocks

    async def through(url: str) -> None:
        async with httpx.AsyncClient() as raw:  # the proxy does compress what we ask for
            answer = await fetch(raw, f"{url}/api/flist/alpha", max_bytes=MiB)
            assert answer.headers["content-encoding"] == coding
        async with HubClient(url, cache_dir=tmp_path / coding, retry=FAST) as client:
            listing = await client.list("alpha")
            assert [entry.name for entry in listing] == ["rel.fl"]
            info = await client.info("alpha/rel.fl")
            path = await client.download("alpha/rel.fl")  # checked against the md5 the hub announces
            assert path.name == info.md5
            assert path.read_bytes() == (hub.root / "alpha" / "rel.fl").read_bytes()
        store = HttpStore(f"{url}/blocks", retry=FAST)
        try:
            for name, data in blocks.items():
                assert await store.get(bytes.fromhex(name)) == data
        finally:
            await store.aclose()

    with shaping_proxy(hub.url, coding) as proxy:
        asyncio.run(through(proxy))


def test_a_gzip_bomb_is_stopped_at_the_decoded_size_limit(
        hub_and_blocks: tuple[Hub, dict[str, bytes]], tmp_path: Path) -> None:
    hub, blocks = hub_and_blocks
    bomb = 64 * MiB  # about 64 KiB on the wire

    async def attack(url: str) -> None:
        async with httpx.AsyncClient() as client:
            started = time.monotonic()
            with pytest.raises(ResponseTooLarge, match=rf"larger than the {MiB} bytes allowed decoded"):
                await fetch(client, f"{url}/__bomb__/{bomb}", max_bytes=MiB, retry=FAST)
            assert time.monotonic() - started < 2.0  # stopped after 1 MiB, not after inflating 64
            under = await fetch(client, f"{url}/__bomb__/{MiB}", max_bytes=MiB, retry=FAST)
            assert under.body == bytes(MiB)  # exactly at the limit is fine
            with pytest.raises(BadEncoding, match=r"Content-Encoding 'br'; expected one of gzip, deflate"):
                await fetch(client, f"{url}/__coding__/br", max_bytes=MiB, retry=FAST)

    with shaping_proxy(hub.url, "gzip") as proxy:
        asyncio.run(attack(proxy))
    # the hub behind is untouched and still serves every block
    assert {p.name: p.read_bytes() for p in hub.blocks.rglob("*") if p.is_file()} == blocks  # type: ignore[union-attr]
