"""The zdb:// store against two real peers: a real 0-db (the server it is for) and a redis-server.

Every behaviour both servers share runs against both; 0-db's namespaces with passwords, its
read-only and full namespaces and its error answers run against 0-db only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis

from tests.flist.stores.blocks import V1_DATA, V1_REF, V2_DATA, V2_REF
from tests.support.procs import free_port
from tests.support.upstream import ZdbServer
from zos_upgrade.flist.blocks import decrypt_block, encrypt_block_v2
from zos_upgrade.flist.stores import (
    BlockMissing,
    StoreError,
    ZdbAccessDenied,
    ZdbFull,
    ZdbNamespaceMissing,
    ZdbReadOnly,
    ZdbRefused,
    ZdbStore,
    open_store,
)


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class Peer:
    """A server the zdb:// store talks to, and how to get a second namespace on it."""

    kind: str
    port: int
    new_namespace: Callable[[], str]  # a fresh, empty, writable namespace's name

    def url(self, namespace: str = "default") -> str:
        return f"zdb://127.0.0.1:{self.port}/{namespace}"


@pytest.fixture(params=["0-db", "redis"])
def peer(request: pytest.FixtureRequest) -> Peer:
    if request.param == "redis":
        port: int = request.getfixturevalue("redis_port")
        # plain Redis only knows numeric namespaces: every database is emptied for each test
        with redis.Redis(host="127.0.0.1", port=port, protocol=2) as client:
            client.flushall()
        return Peer("redis", port, lambda: "2")
    zdb: ZdbServer = request.getfixturevalue("real_zdb")
    names = iter(f"ns{i}" for i in range(100))

    def fresh() -> str:
        name = next(names)
        zdb.namespace(name)
        return name

    return Peer("0-db", zdb.port, fresh)


def test_zdb_default_namespace_round_trip(peer: Peer) -> None:
    async def scenario() -> None:
        store = open_store(peer.url())
        assert isinstance(store, ZdbStore) and store.namespace == "default"
        assert not await store.has(V1_REF.id)
        await store.put(V1_REF.id, V1_DATA)
        await store.put(V2_REF.id, V2_DATA)
        assert await store.has(V1_REF.id)
        assert await store.get(V1_REF.id) == V1_DATA
        assert decrypt_block(V2_REF, await store.get(V2_REF.id)) == b"version two block" * 100
        await store.aclose()

    asyncio.run(scenario())


def test_zdb_namespaces_are_separate(peer: Peer) -> None:
    ref, data = encrypt_block_v2(b"only in the second namespace")

    async def scenario() -> None:
        two = open_store(peer.url(peer.new_namespace()))
        default = open_store(peer.url())
        await two.put(ref.id, data)
        assert await two.get(ref.id) == data
        assert not await default.has(ref.id)
        with pytest.raises(BlockMissing, match=ref.id.hex()):
            await default.get(ref.id)
        await two.aclose()
        await default.aclose()

    asyncio.run(scenario())


def test_zdb_refused_namespace(peer: Peer) -> None:
    async def scenario() -> None:
        store = open_store(peer.url("no-such-ns"))
        with pytest.raises(StoreError, match="SELECT 'no-such-ns' refused"):
            await store.get(V1_REF.id)
        await store.aclose()

    asyncio.run(scenario())


def test_zdb_many_blocks_over_pooled_connections(peer: Peer) -> None:
    # more concurrent requests than the pool's 16 connections: each new connection selects again
    refs = [encrypt_block_v2(f"block {i}".encode() * 50) for i in range(64)]

    async def scenario() -> None:
        store = open_store(peer.url(peer.new_namespace()))
        await asyncio.gather(*(store.put(ref.id, data) for ref, data in refs))
        got = await asyncio.gather(*(store.get(ref.id) for ref, _ in refs))
        assert got == [data for _, data in refs]
        await store.aclose()

    asyncio.run(scenario())


def test_zdb_password_goes_to_select_on_redis(redis_port: int) -> None:
    async def scenario() -> None:
        store = open_store(f"zdb://user:secret@127.0.0.1:{redis_port}/1")
        # redis' SELECT takes one argument: the password proves it was sent with the namespace
        with pytest.raises(ZdbRefused, match="SELECT '1' refused"):
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


# --- real 0-db only: its namespaces, passwords and refusals -------------------------------------


def test_real_zdb_password_namespace(real_zdb: ZdbServer) -> None:
    url = real_zdb.namespace("secret-ns", "s3cret", public=False)

    async def scenario() -> None:
        store = open_store(url)
        await store.put(V1_REF.id, V1_DATA)
        assert await store.get(V1_REF.id) == V1_DATA
        await store.aclose()
        wrong = open_store(real_zdb.url("secret-ns", "wrong"))
        with pytest.raises(ZdbAccessDenied, match=r"Access denied.*needs its password"):
            await wrong.get(V1_REF.id)
        await wrong.aclose()
        # private: without a password nothing is readable either
        anonymous = open_store(real_zdb.url("secret-ns"))
        with pytest.raises(ZdbAccessDenied, match="protected and private"):
            await anonymous.has(V1_REF.id)
        await anonymous.aclose()

    asyncio.run(scenario())


def test_real_zdb_public_namespace_is_read_only_without_password(real_zdb: ZdbServer) -> None:
    writer_url = real_zdb.namespace("public-ns", "s3cret", public=True)

    async def scenario() -> None:
        writer = open_store(writer_url)
        await writer.put(V1_REF.id, V1_DATA)
        await writer.aclose()
        reader = open_store(real_zdb.url("public-ns"))
        assert await reader.get(V1_REF.id) == V1_DATA  # reads need no password
        with pytest.raises(ZdbReadOnly, match="read-only mode"):
            await reader.put(V2_REF.id, V2_DATA)
        await reader.aclose()
        check = open_store(writer_url)
        assert not await check.has(V2_REF.id)  # the refused write stored nothing
        await check.aclose()

    asyncio.run(scenario())


def test_real_zdb_missing_namespace_is_typed(real_zdb: ZdbServer) -> None:
    async def scenario() -> None:
        store = open_store(real_zdb.url("never-made"))
        with pytest.raises(ZdbNamespaceMissing, match=r"Namespace not found.*NSNEW"):
            await store.get(V1_REF.id)
        await store.aclose()

    asyncio.run(scenario())


def test_real_zdb_full_namespace(real_zdb: ZdbServer) -> None:
    url = real_zdb.namespace("small", maxsize=len(V1_DATA) + 10)

    async def scenario() -> None:
        store = open_store(url)
        await store.put(V1_REF.id, V1_DATA)
        with pytest.raises(ZdbFull, match=r"No space left.*maxsize"):
            await store.put(V2_REF.id, V2_DATA)
        assert not await store.has(V2_REF.id)
        assert await store.get(V1_REF.id) == V1_DATA
        await store.aclose()

    asyncio.run(scenario())


def test_real_zdb_locked_namespace_refuses_writes(real_zdb: ZdbServer) -> None:
    url = real_zdb.namespace("locked")
    real_zdb.command("NSSET", "locked", "lock", 1)

    async def scenario() -> None:
        store = open_store(url)
        with pytest.raises(ZdbReadOnly, match="locked"):
            await store.put(V1_REF.id, V1_DATA)
        await store.aclose()

    asyncio.run(scenario())


def test_real_zdb_speaks_resp2_whatever_redis_py(real_zdb: ZdbServer) -> None:
    # redis-py 8 sends HELLO 3 by default: 0-db refuses it, which is what the store must avoid
    with pytest.raises(redis.exceptions.ResponseError, match="Command not supported"):
        real_zdb.command("HELLO", 3)
    store = open_store(real_zdb.url())
    assert isinstance(store, ZdbStore)

    async def scenario() -> None:
        await store.put(V2_REF.id, V2_DATA)
        assert await store.get(V2_REF.id) == V2_DATA
        await store.aclose()

    asyncio.run(scenario())
