"""``zdb://[user[:pass]@]host[:port][/namespace]``: blocks in a 0-db in user mode, over the Redis protocol.

``SELECT namespace [pass]`` runs on every new connection unless the namespace is ``default``. Real
0-db namespaces are names; a plain Redis only accepts numeric ones (or ``default``, no SELECT).
The client speaks RESP2 whatever redis-py version is installed: 0-db knows no ``HELLO`` (redis-py 8
sends ``HELLO 3`` by default and 0-db answers ``-Command not supported``). 0-db's error answers
become the typed errors of :mod:`.zdb_errors`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import SplitResult, unquote

from zos_upgrade.flist.stores.base import MAX_STORED_BYTES, BlockMissing, StoreError, block_hex
from zos_upgrade.flist.stores.zdb_errors import zdb_refusal

__all__ = ["ZDB_DEFAULT_PORT", "ZdbStore", "open_zdb_url"]

ZDB_DEFAULT_PORT = 9900

Sleep = Callable[[float], Awaitable[None]]


class ZdbStore:
    """Blocks in a 0-db (or any Redis-protocol server) under their raw id bytes.

    ``redis`` is imported here, not at module load: importing it costs every CLI start time
    (0.06-0.08 s measured with ``python -X importtime``), and most runs never open a ``zdb://`` store.
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
        import asyncio

        self.url = url or f"zdb://{host}:{port}/{namespace}"
        self.namespace = namespace
        self._password = password
        self._attempts = attempts
        self._sleep = sleep or asyncio.sleep
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # a blocking pool: a caller past the 16th concurrent request waits for a free connection
        # (the plain pool raises "Too many connections" instead, and the block is lost)
        pool = aioredis.BlockingConnectionPool(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
            # 0-db has no numeric databases: the namespace is selected by our own connect hook
            redis_connect_func=self._on_connect,
            # retries are ours (counted, with the injected sleep), not redis-py's hidden ones
            retry=Retry(NoBackoff(), 0),
            max_connections=16, timeout=timeout,
            # RESP2: 0-db has no HELLO; redis-py >= 5 takes `protocol` (8 defaults to 3)
            protocol=2,
        )
        self._client = aioredis.Redis(connection_pool=pool)

        # redis-py leaves execute_command unannotated; pin the type once here
        self._execute: Callable[..., Awaitable[Any]] = self._client.execute_command

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
        import redis.exceptions

        last: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._execute(*args)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
                last = exc
                if attempt < self._attempts:
                    await self._sleep(0.1 * 2**attempt)
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

    async def aclose(self) -> None:
        # a client given its pool does not own it: close both
        await self._client.aclose()
        await self._client.connection_pool.disconnect()


def open_zdb_url(url: str, parts: SplitResult) -> ZdbStore:
    """The store ``zdb://[user[:pass]@]host[:port][/namespace]`` names."""
    if not parts.hostname:
        raise StoreError(f"invalid store URL {url!r}: expected zdb://[user[:pass]@]host[:port][/ns]")
    namespace = unquote(parts.path.strip("/")) or "default"
    if "/" in namespace or any(c.isspace() for c in namespace):
        raise StoreError(f"invalid store URL {url!r}: namespace {namespace!r} is not one name")
    password = unquote(parts.password) if parts.password else None
    return ZdbStore(parts.hostname, parts.port or ZDB_DEFAULT_PORT, namespace, password, url=url)
