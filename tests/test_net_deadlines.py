"""Issue 16 item 4: a peer that trickles its answers is cut off by the whole fetch's deadline and by the
minimum rate, not only by per-read timeouts -- block fetches, flist downloads and JSON answers alike.

A real hub on loopback with a real release; a proxy in front of it sends every body one byte at a
time. The same hub, asked directly, keeps serving the same bytes: the slow path harmed nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hub import Hub, hub_process, place_release
from tests.support.shaping_proxy import shaping_proxy
from zos_upgrade.flist.stores import HttpStore, StoreError
from zos_upgrade.hub import HubClient
from zos_upgrade.net import Backoff, DeadlineExceeded, RetryPolicy, TooSlow

DRIP = 0.1  # seconds between two bytes of a trickled body
QUICK = Backoff(base=0.01, cap=0.01)
# only the overall deadline can stop the trickle: no minimum rate, a generous per-attempt deadline
TOTAL_ONLY = RetryPolicy(attempts=4, backoff=QUICK, deadline=30.0, total=1.0, min_rate=0)


@pytest.fixture
def hub_and_blocks(tmp_path: Path) -> Iterator[tuple[Hub, dict[str, bytes]]]:
    with hub_process(tmp_path / "hub", tmp_path, blocks=True) as hub:
        yield hub, place_release(hub, tmp_path)


def _block_ids(blocks: dict[str, bytes]) -> list[bytes]:
    return [bytes.fromhex(name) for name in sorted(blocks)]


def test_two_trickled_blocks_fail_within_the_whole_fetch_deadline(
        hub_and_blocks: tuple[Hub, dict[str, bytes]]) -> None:
    hub, blocks = hub_and_blocks
    ids = _block_ids(blocks)[:2]

    async def fetch_both(url: str, policy: RetryPolicy) -> list[bytes | BaseException]:
        store = HttpStore(f"{url}/blocks", retry=policy)
        try:
            return await asyncio.gather(*(store.get(block) for block in ids), return_exceptions=True)
        finally:
            await store.aclose()

    with shaping_proxy(hub.url, "trickle", DRIP) as slow:
        started = time.monotonic()
        failures = asyncio.run(fetch_both(slow, TOTAL_ONLY))
        took = time.monotonic() - started
    assert took < 3.0, f"two trickled blocks took {took:.1f}s against a 1s deadline"
    for block, failure in zip(ids, failures, strict=True):
        assert isinstance(failure, StoreError), failure
        cause = failure.__cause__
        assert isinstance(cause, DeadlineExceeded)
        assert cause.url.endswith(block.hex()) and f"{slow}/blocks" in str(failure)
        assert 0 < cause.received < len(blocks[block.hex()]) and 0.9 < cause.elapsed < 3.0
        assert "within the 1s allowed for the whole fetch" in str(failure)
        assert f"{cause.received} bytes of the last attempt received" in str(failure)
    # the hub itself, asked directly, still serves both blocks unchanged
    assert asyncio.run(fetch_both(hub.url, RetryPolicy())) == [blocks[b.hex()] for b in ids]
    assert {p.name: p.read_bytes() for p in hub.blocks.rglob("*") if p.is_file()} == blocks  # type: ignore[union-attr]


def test_a_trickle_below_the_minimum_rate_is_cut_long_before_the_deadline(
        hub_and_blocks: tuple[Hub, dict[str, bytes]]) -> None:
    hub, blocks = hub_and_blocks
    block = _block_ids(blocks)[0]
    policy = RetryPolicy(attempts=2, backoff=QUICK, deadline=30.0, total=60.0, min_rate=1000, grace=0.5)

    async def fetch_one() -> None:
        store = HttpStore(f"{slow}/blocks", retry=policy)
        try:
            await store.get(block)
        finally:
            await store.aclose()

    with shaping_proxy(hub.url, "trickle", DRIP) as slow:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"slower than the 1000 bytes/s required after 0.5s") as caught:
            asyncio.run(fetch_one())
        took = time.monotonic() - started
    assert took < 3.0, f"two attempts under the minimum rate took {took:.1f}s"
    cause = caught.value.__cause__
    assert isinstance(cause, TooSlow) and cause.url.endswith(block.hex())
    assert 0 < cause.received < 1000 and "failed after 2 attempts" in str(caught.value)


def test_flist_download_and_json_answers_have_a_whole_fetch_deadline(
        hub_and_blocks: tuple[Hub, dict[str, bytes]], tmp_path: Path) -> None:
    hub, _ = hub_and_blocks
    cache = tmp_path / "cache"

    async def download(url: str) -> Path:
        async with HubClient(url, cache_dir=cache, retry=TOTAL_ONLY) as client:
            return await client.download("alpha/rel.fl")

    async def info(url: str) -> None:
        async with HubClient(url, retry=TOTAL_ONLY) as client:
            await client.info("alpha/rel.fl")

    # only the flist file trickles; the JSON that names its md5 comes through whole
    with shaping_proxy(hub.url, "trickle", DRIP, prefix="/alpha/") as slow:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"/alpha/rel\.fl: no complete answer within the 1s"):
            asyncio.run(download(slow))
        assert time.monotonic() - started < 3.0
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-downloaded left behind
    with shaping_proxy(hub.url, "trickle", DRIP, prefix="/api/") as slow:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"/api/flist/alpha/rel\.fl/light: no complete answer"):
            asyncio.run(info(slow))
        assert time.monotonic() - started < 3.0
    assert asyncio.run(download(hub.url)).read_bytes() == (hub.root / "alpha" / "rel.fl").read_bytes()
