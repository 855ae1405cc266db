"""The zdb:// store against two real peers: a real 0-db (the server it is for) and a redis-server.

Every behaviour both servers share runs against both; 0-db's namespaces with passwords, its
read-only and full namespaces and its error answers run against 0-db only.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis

from tests.flist.stores.blocks import V1_DATA, V1_REF, V2_DATA, V2_REF
from tests.support.procs import REPO, free_port
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
from zos_upgrade.flist.stores.base import MAX_STORED_BYTES
from zos_upgrade.flist.stores.resp import RespConnection


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


# --- the packer's batched uploads (upload_missing: blocking, from worker threads) --------------


def _blocks(count: int, tag: str = "block") -> list[tuple[bytes, bytes]]:
    sealed = (encrypt_block_v2(f"{tag} {i}".encode() * 300) for i in range(count))
    return [(ref.id, data) for ref, data in sealed]


def test_zdb_upload_missing_stores_what_is_new_and_skips_what_is_there(peer: Peer) -> None:
    store = open_store(peer.url(peer.new_namespace()))
    assert isinstance(store, ZdbStore)
    first, more = _blocks(40), _blocks(10, "more")
    assert store.upload_missing(first) == [True] * 40
    # a second batch with the old blocks mixed in: only the new ones go out
    mixed = first[:5] + more + first[30:]
    assert store.upload_missing(mixed) == [False] * 5 + [True] * 10 + [False] * 10

    async def check() -> None:
        for block_id, data in first + more:
            assert await store.get(block_id) == data
        await store.aclose()

    asyncio.run(check())


def test_zdb_upload_missing_from_many_threads(peer: Peer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = open_store(peer.url(peer.new_namespace()))
    assert isinstance(store, ZdbStore)
    batches = [_blocks(8, f"t{n}") for n in range(12)]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(store.upload_missing, batches)) == [[True] * 8] * 12

    async def check() -> None:
        for block_id, data in (b for batch in batches for b in batch):
            assert await store.get(block_id) == data
        await store.aclose()

    asyncio.run(check())


def test_zdb_upload_missing_refused_namespace_is_typed(peer: Peer) -> None:
    store = open_store(peer.url("no-such-ns"))
    assert isinstance(store, ZdbStore)
    with pytest.raises(StoreError, match="SELECT 'no-such-ns' refused"):
        store.upload_missing(_blocks(2))


def test_zdb_upload_missing_unreachable_after_retries() -> None:
    store = ZdbStore("127.0.0.1", free_port(), timeout=1, attempts=2)
    with pytest.raises(StoreError, match="uploading 1 blocks failed after 2 attempts"):
        store.upload_missing(_blocks(1))


def test_zdb_upload_missing_refuses_a_bad_id() -> None:
    store = ZdbStore("127.0.0.1", free_port(), timeout=1, attempts=1)
    with pytest.raises(StoreError, match="16 \\(v1\\) or 32 \\(v2\\) bytes"):
        store.upload_missing([(b"short", b"data")])


@pytest.mark.parametrize(("answer", "why"), [
    (b"$999999999\r\n", "a bulk reply of 999999999 bytes"),
    (b"!3\r\nbad\r\n", "a reply starting with"),
    (b":12x\r\n", "is not a RESP integer"),
    (b"+" + b"x" * 5000, "a reply line longer than 4096 bytes"),
    (b"$2\r\nabcd", "a bulk reply not ended by CRLF"),
    (b"+OK\r\n", "EXISTS [0-9a-f]+ answered 'OK'"),
])
def test_zdb_upload_missing_refuses_a_hostile_server(answer: bytes, why: str) -> None:
    from tests.support.procs import serving

    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.bad_resp", str(port), answer.hex()]
    with serving(cmd, port, cwd=REPO):
        store = ZdbStore("127.0.0.1", port, timeout=2, attempts=2)
        with pytest.raises(StoreError, match=f"failed after 2 attempts: .*{why}"):
            store.upload_missing(_blocks(3))


def test_real_zdb_upload_missing_full_namespace_is_typed(real_zdb: ZdbServer) -> None:
    first, second = _blocks(1), _blocks(1, "other")
    url = real_zdb.namespace("small-batch", maxsize=len(first[0][1]) + 10)
    store = open_store(url)
    assert isinstance(store, ZdbStore)
    assert store.upload_missing(first) == [True]
    with pytest.raises(ZdbFull, match=r"SET [0-9a-f]+ refused: No space left"):
        store.upload_missing(second)
    # the refused connection is dropped, not reused with unread replies: the next batch is answered right
    assert store.upload_missing(first) == [False]


class _RecordingSocket:
    """A real socket that notes, in order, each read and each TCP option set on it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.calls: list[str] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if level == socket.IPPROTO_TCP and option == getattr(socket, "TCP_QUICKACK", -1):
            self.calls.append("quickack")
        self._sock.setsockopt(level, option, value)

    def recv(self, size: int) -> bytes:
        self.calls.append("recv")
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux only")
def test_real_zdb_pipelined_replies_are_read_with_quick_acks(real_zdb: ZdbServer) -> None:
    # 0-db sends each reply with Nagle on: a delayed ACK of ours would hold the next reply ~40 ms
    conn = RespConnection("127.0.0.1", real_zdb.port, timeout=5, max_bulk=MAX_STORED_BYTES)
    recording = _RecordingSocket(conn._sock)
    conn._sock = recording  # type: ignore[assignment]
    try:
        blocks = _blocks(16, "quick")
        answers = conn.pipeline([[b"SET", block_id, data] for block_id, data in blocks])
        assert answers == [block_id for block_id, _ in blocks]
        assert conn.pipeline([[b"EXISTS", block_id] for block_id, _ in blocks]) == [1] * 16
    finally:
        conn.close()
    reads = [i for i, call in enumerate(recording.calls) if call == "recv"]
    assert reads and all(recording.calls[i - 1] == "quickack" for i in reads), recording.calls
