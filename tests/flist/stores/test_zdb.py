"""The zdb:// store against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from tests.flist.stores.blocks import V1_DATA, V1_REF, V2_DATA, V2_REF
from tests.support.procs import free_port
from zos_upgrade.flist.blocks import decrypt_block, encrypt_block_v2
from zos_upgrade.flist.stores import BlockMissing, StoreError, ZdbStore, open_store


async def _no_sleep(_: float) -> None:
    return None


def test_zdb_default_namespace_round_trip(redis_port: int) -> None:
    async def scenario() -> None:
        store = open_store(f"zdb://127.0.0.1:{redis_port}")
        assert isinstance(store, ZdbStore) and store.namespace == "default"
        await store.put(V1_REF.id, V1_DATA)
        await store.put(V2_REF.id, V2_DATA)
        assert await store.has(V1_REF.id)
        assert await store.get(V1_REF.id) == V1_DATA
        assert decrypt_block(V2_REF, await store.get(V2_REF.id)) == b"version two block" * 100
        await store.aclose()

    asyncio.run(scenario())


def test_zdb_namespaces_are_separate(redis_port: int) -> None:
    # plain Redis only knows numeric namespaces; real 0-db namespaces are names (same SELECT command)
    ref, data = encrypt_block_v2(b"only in namespace 2")

    async def scenario() -> None:
        two = open_store(f"zdb://127.0.0.1:{redis_port}/2")
        default = open_store(f"zdb://127.0.0.1:{redis_port}/default")
        await two.put(ref.id, data)
        assert await two.get(ref.id) == data
        assert not await default.has(ref.id)
        with pytest.raises(BlockMissing, match=ref.id.hex()):
            await default.get(ref.id)
        await two.aclose()
        await default.aclose()

    asyncio.run(scenario())


def test_zdb_refused_namespace(redis_port: int) -> None:
    async def scenario() -> None:
        store = open_store(f"zdb://127.0.0.1:{redis_port}/no-such-ns")
        with pytest.raises(StoreError, match="SELECT 'no-such-ns' refused"):
            await store.get(V1_REF.id)
        await store.aclose()

    asyncio.run(scenario())


def test_zdb_password_goes_to_select(redis_port: int) -> None:
    async def scenario() -> None:
        store = open_store(f"zdb://user:secret@127.0.0.1:{redis_port}/1")
        # redis' SELECT takes one argument: the password proves it was sent with the namespace
        with pytest.raises(StoreError, match="SELECT '1' refused"):
            await store.has(V1_REF.id)
        await store.aclose()

    asyncio.run(scenario())


def test_zdb_unreachable_after_retries() -> None:
    async def scenario() -> None:
        store = ZdbStore("127.0.0.1", free_port(), timeout=1, attempts=2, sleep=_no_sleep)
        with pytest.raises(StoreError, match="failed after 2 attempts"):
            await store.get(V1_REF.id)
        await store.aclose()

    asyncio.run(scenario())
