"""The router over dir:// stores: routes by the first id byte, fall-through, errors."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.flist.stores.blocks import V2_DATA, V2_REF
from zos_upgrade.flist.stores import BlockMissing, DirStore, Route, Router, StoreError


def _id(first: int) -> bytes:
    return bytes([first]) + b"\x11" * 31


def test_router_routes_by_first_byte(tmp_path: Path) -> None:
    low, high, both = tmp_path / "low", tmp_path / "high", tmp_path / "both"
    router = Router([Route(0x00, 0x7F, f"dir://{low}"), Route(0x80, 0xFF, f"dir://{high}"),
                     Route(0x70, 0x8F, f"dir://{both}")])

    async def scenario() -> None:
        await router.put(_id(0x10), b"a")
        await router.put(_id(0x75), b"b")
        await router.put(_id(0x90), b"c")
        assert await router.get(_id(0x10)) == b"a"
        assert await router.has(_id(0x90))
        await router.aclose()

    asyncio.run(scenario())
    assert sorted(os.listdir(low)) == ["10", "75"]
    assert sorted(os.listdir(high)) == ["90"]
    assert sorted(os.listdir(both)) == ["75"]


def test_router_read_falls_through_to_the_next_store(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    asyncio.run(DirStore(second).put(V2_REF.id, V2_DATA))
    router = Router([Route(0, 255, f"dir://{first}"), Route(0, 255, f"dir://{second}")])
    assert asyncio.run(router.get(V2_REF.id)) == V2_DATA


def test_router_missing_everywhere_names_every_store(tmp_path: Path) -> None:
    router = Router([Route(0, 255, f"dir://{tmp_path}/a"), Route(0, 255, f"dir://{tmp_path}/b")])
    with pytest.raises(BlockMissing) as info:
        asyncio.run(router.get(V2_REF.id))
    assert f"{tmp_path}/a" in str(info.value) and f"{tmp_path}/b" in str(info.value)


def test_router_without_a_matching_route(tmp_path: Path) -> None:
    router = Router([Route(0, 0, f"dir://{tmp_path}")])
    with pytest.raises(BlockMissing, match="no route"):
        asyncio.run(router.get(_id(0x42)))
    with pytest.raises(StoreError, match="no route covers"):
        asyncio.run(router.put(_id(0x42), b"x"))


def test_router_single_checks_url_early() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        Router.single("nope://x")


def test_route_validates_range() -> None:
    with pytest.raises(StoreError, match="0 <= start <= end <= 255"):
        Route(10, 5, "dir:///x")
    with pytest.raises(StoreError):
        Route(0, 256, "dir:///x")


class _DownStore(DirStore):
    """A store that is down: every read fails the way an unreachable zdb:// store does."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0

    async def get(self, block_id: bytes) -> bytes:
        self.reads += 1
        raise StoreError(f"{self.url}: GET failed after 3 attempts: connection refused")


def test_a_store_that_failed_is_tried_last_for_a_while(tmp_path: Path) -> None:
    down = _DownStore(tmp_path / "down")
    replica = DirStore(tmp_path / "replica")
    asyncio.run(replica.put(V2_REF.id, V2_DATA))
    now = [1000.0]
    stores = {down.url: down, replica.url: replica}
    router = Router([Route(0, 255, down.url), Route(0, 255, replica.url)], opener=stores.__getitem__,
                    clock=lambda: now[0])

    async def reads(count: int) -> None:
        for _ in range(count):
            assert await router.get(V2_REF.id) == V2_DATA

    asyncio.run(reads(5))
    assert down.reads == 1  # the first read paid for the down store, the next four did not
    now[0] += 29
    asyncio.run(reads(1))
    assert down.reads == 1
    now[0] += 2  # past the demotion: the first route is first again (it may be back)
    asyncio.run(reads(1))
    assert down.reads == 2


def test_router_uploads_batches_to_every_store_a_route_names(tmp_path: Path) -> None:
    low, high, both = tmp_path / "low", tmp_path / "high", tmp_path / "both"
    router = Router([Route(0x00, 0x7F, f"dir://{low}"), Route(0x80, 0xFF, f"dir://{high}"),
                     Route(0x70, 0x8F, f"dir://{both}")])
    assert router.uploads_sync()
    asyncio.run(DirStore(both).put(_id(0x75), b"b"))  # one of its two stores has it already
    batch = [(_id(0x10), b"a"), (_id(0x75), b"b"), (_id(0x90), b"c")]
    assert router.upload_missing(batch) == [True, True, True]
    assert router.upload_missing(batch) == [False, False, False]
    assert sorted(os.listdir(low)) == ["10", "75"]
    assert sorted(os.listdir(high)) == ["90"]
    assert sorted(os.listdir(both)) == ["75"]
    assert (low / "75" / ("75" + "11" * 31)).read_bytes() == b"b"


def test_router_refuses_a_batch_block_no_route_covers(tmp_path: Path) -> None:
    router = Router([Route(0x00, 0x7F, f"dir://{tmp_path / 'low'}")])
    with pytest.raises(StoreError, match="no route covers first byte 0x90"):
        router.upload_missing([(_id(0x10), b"a"), (_id(0x90), b"c")])
    assert not (tmp_path / "low").exists()  # checked before anything is written


def test_router_over_an_http_store_does_not_upload_from_threads(tmp_path: Path) -> None:
    router = Router([Route(0x00, 0xFF, f"dir://{tmp_path}"), Route(0x00, 0xFF, "http://127.0.0.1:9/blocks")])
    assert not router.uploads_sync()
