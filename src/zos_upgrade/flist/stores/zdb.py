"""``zdb://[user[:pass]@]host[:port][/namespace]``: blocks in a 0-db in user mode, over the Redis protocol.

``SELECT namespace [pass]`` runs on every new connection unless the namespace is ``default``. Real
0-db namespaces are names; a plain Redis only accepts numeric ones (or ``default``, no SELECT).
The client speaks RESP2 whatever redis-py version is installed: 0-db knows no ``HELLO`` (redis-py 8
sends ``HELLO 3`` by default and 0-db answers ``-Command not supported``). 0-db's error answers
become the typed errors of :mod:`.zdb_errors`.

The packer's uploads take another road (:meth:`ZdbStore.upload_missing`): blocking connections of
our own RESP2 client (:mod:`.resp`), one per worker thread, each batch of blocks one pipelined
``EXISTS`` round trip and one pipelined ``SET`` round trip (issue 19: pack faster than zflist).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, unquote

from zos_upgrade.flist.stores.base import MAX_STORED_BYTES, BlockMissing, StoreError, block_hex
from zos_upgrade.flist.stores.resp import Reply, RespConnection, RespError, RespProtocolError
from zos_upgrade.flist.stores.zdb_errors import zdb_refusal

__all__ = ["ZDB_DEFAULT_PORT", "ZdbStore", "open_zdb_url"]

ZDB_DEFAULT_PORT = 9900

Sleep = Callable[[float], Awaitable[None]]


class ZdbStore:
    """Blocks in a 0-db (or any Redis-protocol server) under their raw id bytes.

    ``redis`` is imported at the first async call, not at module load nor in the constructor:
    importing it costs every CLI start time (0.06-0.08 s measured with ``python -X importtime``, 0.3 s
    on a loaded machine), and a pack never needs it (its uploads use :meth:`upload_missing`).
    """

    def __init__(
        self,
        host: str,
        port: int = ZDB_DEFAULT_PORT,
        namespace: str = "default",
        password: str | None = None,
        *,
        url: str | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        sleep: Sleep | None = None,
    ) -> None:
        self.url = url or f"zdb://{host}:{port}/{namespace}"
        self.namespace = namespace
        self._host, self._port, self._timeout = host, port, timeout
        self._password = password
        self._attempts = attempts
        self._sleep = sleep
        self._client: Any = None
        # idle blocking connections of upload_missing, one taken per calling thread at a time
        self._idle: list[RespConnection] = []
        self._idle_lock = threading.Lock()

    def _redis(self) -> Any:
        if self._client is not None:
            return self._client
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # a blocking pool: a caller past the 16th concurrent request waits for a free connection
        # (the plain pool raises "Too many connections" instead, and the block is lost)
        pool = aioredis.BlockingConnectionPool(
            host=self._host, port=self._port, socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            # 0-db has no numeric databases: the namespace is selected by our own connect hook
            redis_connect_func=self._on_connect,
            # retries are ours (counted, with the injected sleep), not redis-py's hidden ones
            retry=Retry(NoBackoff(), 0),
            max_connections=16, timeout=self._timeout,
            # RESP2: 0-db has no HELLO; redis-py >= 5 takes `protocol` (8 defaults to 3)
            protocol=2,
        )
        self._client = aioredis.Redis(connection_pool=pool)
        return self._client

    async def _on_connect(self, conn: Any) -> None:
        import redis.exceptions

        await conn.on_connect()
        if self.namespace == "default":
            return
        args = ["SELECT", self.namespace] + ([self._password] if self._password else [])
        await conn.send_command(*args)
        try:
            await conn.read_response()
        except redis.exceptions.ResponseError as exc:
            raise zdb_refusal(self.url, f"SELECT {self.namespace!r}", str(exc)) from exc

    async def _call(self, what: str, *args: Any) -> Any:
        import asyncio

        import redis.exceptions

        # redis-py leaves execute_command unannotated: pin the type here
        execute: Callable[..., Awaitable[Any]] = self._redis().execute_command
        sleep = self._sleep or asyncio.sleep
        last: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                return await execute(*args)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
                last = exc
                if attempt < self._attempts:
                    await sleep(0.1 * 2**attempt)
            except redis.exceptions.ResponseError as exc:
                raise zdb_refusal(self.url, what, str(exc)) from exc
        raise StoreError(f"{self.url}: {what} failed after {self._attempts} attempts: {last}")

    async def get(self, block_id: bytes) -> bytes:
        block_hex(block_id)
        data = await self._call(f"GET {block_id.hex()}", "GET", block_id)
        if data is None:
            raise BlockMissing(block_id, [self.url])
        if not isinstance(data, bytes) or len(data) > MAX_STORED_BYTES:
            raise StoreError(f"{self.url}: GET {block_id.hex()} answered something that is not a block")
        return data

    async def put(self, block_id: bytes, data: bytes) -> None:
        block_hex(block_id)
        # 0-db answers SET with the key, Redis with OK: both mean stored, an error raises
        await self._call(f"SET {block_id.hex()}", "SET", block_id, data)

    async def has(self, block_id: bytes) -> bool:
        block_hex(block_id)
        return bool(await self._call(f"EXISTS {block_id.hex()}", "EXISTS", block_id))

    def upload_missing(self, blocks: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        """Store each (id, bytes) the namespace lacks: one EXISTS and one SET round trip per batch.

        Blocking, for worker threads: each concurrent caller holds a connection of its own. Both
        batches are idempotent, so a dropped connection is retried whole on a new one."""
        for block_id, _ in blocks:
            block_hex(block_id)
        last: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            conn: RespConnection | None = None
            try:
                conn = self._take()
                uploaded = self._upload_on(conn, blocks)
            except (OSError, RespProtocolError) as exc:  # ConnectionError and socket timeouts are OSError
                if conn is not None:
                    conn.close()
                last = exc
                if attempt < self._attempts:
                    time.sleep(0.1 * 2**attempt)
                continue
            except BaseException:
                if conn is not None:
                    conn.close()  # a refusal mid-pipeline leaves replies unread: never reuse it
                raise
            with self._idle_lock:
                self._idle.append(conn)
            return uploaded
        raise StoreError(f"{self.url}: uploading {len(blocks)} blocks failed after {self._attempts} "
                         f"attempts: {last}")

    def _take(self) -> RespConnection:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        conn = RespConnection(self._host, self._port, timeout=self._timeout, max_bulk=MAX_STORED_BYTES)
        try:
            if self.namespace != "default":
                args = [b"SELECT", self.namespace.encode()]
                args += [self._password.encode()] if self._password else []
                self._check(conn.pipeline([args])[0], f"SELECT {self.namespace!r}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _upload_on(self, conn: RespConnection, blocks: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        present = conn.pipeline([[b"EXISTS", block_id] for block_id, _ in blocks])
        missing = []
        for (block_id, data), answer in zip(blocks, present, strict=True):
            if not isinstance(self._check(answer, f"EXISTS {block_id.hex()}"), int):
                raise RespProtocolError(f"{self.url}: EXISTS {block_id.hex()} answered {answer!r}")
            if not answer:
                missing.append((block_id, data))
        answers = conn.pipeline([[b"SET", block_id, data] for block_id, data in missing]) if missing else []
        for (block_id, _), answer in zip(missing, answers, strict=True):
            # 0-db answers SET with the key (or nil when that exact value is already stored), Redis +OK
            self._check(answer, f"SET {block_id.hex()}")
        return [not flag for flag in present]

    def _check(self, answer: Reply, what: str) -> Reply:
        if isinstance(answer, RespError):
            raise zdb_refusal(self.url, what, answer.message)
        return answer

    async def aclose(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if self._client is not None:
            # a client given its pool does not own it: close both
            await self._client.aclose()
            await self._client.connection_pool.disconnect()
            self._client = None


def open_zdb_url(url: str, parts: SplitResult) -> ZdbStore:
    """The store ``zdb://[user[:pass]@]host[:port][/namespace]`` names."""
    if not parts.hostname:
        raise StoreError(f"invalid store URL {url!r}: expected zdb://[user[:pass]@]host[:port][/ns]")
    namespace = unquote(parts.path.strip("/")) or "default"
    if "/" in namespace or any(c.isspace() for c in namespace):
        raise StoreError(f"invalid store URL {url!r}: namespace {namespace!r} is not one name")
    password = unquote(parts.password) if parts.password else None
    return ZdbStore(parts.hostname, parts.port or ZDB_DEFAULT_PORT, namespace, password, url=url)
