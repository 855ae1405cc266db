"""Block stores addressed by URL (SPEC 5) and the router that picks stores by a block id's first byte.

A store is transport only: it moves opaque bytes under an id. It does not decrypt or verify them;
:mod:`zos_upgrade.flist.blocks` does that, so a lying store is caught no matter which one answered.

- ``dir:///path``: ``<root>/<hex[0:2]>/<hex>`` (reads fall back to ``<root>/<hex>``); atomic writes.
- ``http(s)://host/path``: read-only; ``GET <url>/<hex[0:2]>/<hex>``, on 404 ``GET <url>/<hex>``.
- ``zdb://[user[:pass]@]host[:port][/namespace]``: 0-db in user mode over the Redis protocol;
  ``SELECT namespace [pass]`` on every new connection unless the namespace is ``default``.
  Real 0-db namespaces are names; a plain Redis only accepts numeric ones (or ``default``, no SELECT).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable
from urllib.parse import unquote, urlsplit

from zos_upgrade.flist.blocks import BLOCK_SIZE
from zos_upgrade.flist.model import FlistError
from zos_upgrade.fsutil import atomic_write_bytes, read_at_most

if TYPE_CHECKING:
    import httpx

    from zos_upgrade import net

__all__ = [
    "MAX_STORED_BYTES",
    "BlockMissing",
    "BlockStore",
    "DirStore",
    "HttpStore",
    "LocalStore",
    "Route",
    "Router",
    "StoreError",
    "ZdbStore",
    "open_store",
]

log = logging.getLogger(__name__)

# The largest stored block either pipeline can produce (snappy worst case + framing/tag), rounded up:
# a store answering more than this is not sending one of our blocks.
MAX_STORED_BYTES = BLOCK_SIZE + BLOCK_SIZE // 6 + 1024
ZDB_DEFAULT_PORT = 9900


class BlockMissing(FlistError):
    """No store that was tried holds the block."""

    def __init__(self, block_id: bytes, stores: Sequence[str]) -> None:
        tried = ", ".join(stores) if stores else "no store (no route covers this id)"
        super().__init__(f"block {block_id.hex()} is missing; tried: {tried}")
        self.block_id = block_id
        self.stores = tuple(stores)


class StoreError(FlistError):
    """A store URL is invalid, a store is unreachable (after retries), or it refused a write."""


@runtime_checkable
class BlockStore(Protocol):
    url: str

    async def get(self, block_id: bytes) -> bytes: ...

    async def put(self, block_id: bytes, data: bytes) -> None: ...

    async def has(self, block_id: bytes) -> bool: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LocalStore(Protocol):
    """A store that also reads a block synchronously, without the event loop (``dir://``): a caller
    already in a worker thread reads, verifies and writes a block in that one thread. With the bytes
    comes the file they were read from, when there is one (a cache on the same file system links it)."""

    url: str

    def read_block_file(self, block_id: bytes) -> tuple[bytes, str | None]: ...


def _hex(block_id: bytes) -> str:
    # only ids of the two formats are ever looked up: this also keeps odd input out of paths and URLs
    if len(block_id) not in (16, 32):
        raise StoreError(f"a block id must be 16 (v1) or 32 (v2) bytes, got {len(block_id)}")
    return block_id.hex()


# --- dir:// ----------------------------------------------------------------------------------------


class DirStore:
    """Blocks as files in a local directory, sharded by the first id byte."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = root
        self.url = url or f"dir://{root}"
        self._prefix = os.path.join(root, "")

    def _paths(self, block_id: bytes) -> tuple[str, str]:
        # plain strings, not Paths: built for every block read, and pathlib costs ~10x as much
        name = _hex(block_id)
        return f"{self._prefix}{name[:2]}/{name}", f"{self._prefix}{name}"

    def read_block(self, block_id: bytes) -> bytes:
        """The stored bytes of ``block_id``, read synchronously (a local store needs no event loop)."""
        return self.read_block_file(block_id)[0]

    def read_block_file(self, block_id: bytes) -> tuple[bytes, str]:
        """``read_block``, and the file the bytes came from (a cache on the same file system links it)."""
        for path in self._paths(block_id):
            # a short read (never seen on a local file) would only fail verification
            try:
                data = read_at_most(path, MAX_STORED_BYTES)
            except OSError as exc:
                raise StoreError(f"{self.url}: cannot read block file {path}: {exc}") from exc
            if data is None:
                continue
            if len(data) > MAX_STORED_BYTES:
                raise StoreError(f"{self.url}: block file {path} is larger than {MAX_STORED_BYTES} bytes")
            return data, path
        raise BlockMissing(block_id, [self.url])

    def _write(self, block_id: bytes, data: bytes) -> None:
        sharded = Path(self._paths(block_id)[0])
        try:
            sharded.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(sharded, data)
        except OSError as exc:
            raise StoreError(f"{self.url}: cannot write block {block_id.hex()}: {exc}") from exc

    async def get(self, block_id: bytes) -> bytes:
        import asyncio  # here, not at the top: see HttpStore

        return await asyncio.to_thread(self.read_block, block_id)

    async def put(self, block_id: bytes, data: bytes) -> None:
        import asyncio

        await asyncio.to_thread(self._write, block_id, data)

    async def has(self, block_id: bytes) -> bool:
        return any(os.path.isfile(path) for path in self._paths(block_id))

    async def aclose(self) -> None:
        return None


# --- http(s):// ------------------------------------------------------------------------------------


def _proxied() -> bool:
    """True when the environment names an HTTP proxy: then httpx's own transport goes through it."""
    import urllib.request

    proxies = urllib.request.getproxies()
    return "http" in proxies or "all" in proxies


class HttpStore:
    """Read-only blocks over HTTP: the 0-hub ``/blocks`` layout or any static file server.

    httpx, the transport and asyncio are imported when a store is made, not with this module: a
    file-writer process (``writer_child``) loads the ``dir://`` store alone and starts in a third of
    the time.
    """

    def __init__(
        self,
        url: str,
        *,
        concurrency: int = 8,
        timeout: float = 30.0,
        retry: net.RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        import asyncio

        import httpx

        from zos_upgrade import net
        from zos_upgrade.http11 import LeanTransport

        self.url = url
        self._base = url.rstrip("/")
        self._limit = asyncio.Semaphore(concurrency)
        self._retry = retry or net.RetryPolicy()  # one policy (and its jitter source) for every block
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                                   transport=None if _proxied() else LeanTransport())

    async def _request(self, method: str, url: str) -> net.FetchResult:
        from zos_upgrade import net

        async with self._limit:
            try:
                return await net.fetch(
                    self._client, url, method=method, max_bytes=MAX_STORED_BYTES,
                    expect=(200, 404, 405), retry=self._retry,
                )
            except net.TransportError as exc:
                raise StoreError(f"{self.url}: {exc}") from exc

    async def _lookup(self, method: str, block_id: bytes) -> net.FetchResult | None:
        name = _hex(block_id)
        for url in (f"{self._base}/{name[:2]}/{name}", f"{self._base}/{name}"):
            result = await self._request(method, url)
            if result.status == 405 and method == "HEAD":
                # a server without HEAD still answers GET: existence costs one download then
                result = await self._request("GET", url)
            if result.status == 200:
                return result
            if result.status == 405:
                raise StoreError(f"{self.url}: {method} {url} is not allowed by the server")
        return None

    async def get(self, block_id: bytes) -> bytes:
        result = await self._lookup("GET", block_id)
        if result is None:
            raise BlockMissing(block_id, [self.url])
        return result.body

    async def put(self, block_id: bytes, data: bytes) -> None:
        raise StoreError(f"{self.url}: http(s) stores are read-only; cannot write block {block_id.hex()}")

    async def has(self, block_id: bytes) -> bool:
        return await self._lookup("HEAD", block_id) is not None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


# --- zdb:// ----------------------------------------------------------------------------------------

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

        self._client = aioredis.Redis(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
            # 0-db has no numeric databases: the namespace is selected by our own connect hook
            redis_connect_func=self._on_connect,
            # retries are ours (counted, with the injected sleep), not redis-py's hidden ones
            retry=Retry(NoBackoff(), 0),
            max_connections=16,
        )

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
            raise StoreError(f"{self.url}: SELECT {self.namespace!r} refused: {exc}") from exc

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
                raise StoreError(f"{self.url}: {what} refused: {exc}") from exc
        raise StoreError(f"{self.url}: {what} failed after {self._attempts} attempts: {last}")

    async def get(self, block_id: bytes) -> bytes:
        _hex(block_id)
        data = await self._call(f"GET {block_id.hex()}", "GET", block_id)
        if data is None:
            raise BlockMissing(block_id, [self.url])
        if not isinstance(data, bytes) or len(data) > MAX_STORED_BYTES:
            raise StoreError(f"{self.url}: GET {block_id.hex()} answered something that is not a block")
        return data

    async def put(self, block_id: bytes, data: bytes) -> None:
        _hex(block_id)
        # 0-db answers SET with the key, Redis with OK: both mean stored, an error raises
        await self._call(f"SET {block_id.hex()}", "SET", block_id, data)

    async def has(self, block_id: bytes) -> bool:
        _hex(block_id)
        return bool(await self._call(f"EXISTS {block_id.hex()}", "EXISTS", block_id))

    async def aclose(self) -> None:
        await self._client.aclose()


# --- URLs and routing ------------------------------------------------------------------------------


def open_store(url: str) -> BlockStore:
    """Open the store a URL names: ``dir:///abs/path``, ``http(s)://...`` or ``zdb://...``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StoreError(f"invalid store URL {url!r}: {exc}") from exc
    if parts.scheme == "dir":
        if parts.netloc or not parts.path.startswith("/"):
            raise StoreError(f"invalid store URL {url!r}: expected dir:///absolute/path")
        return DirStore(Path(unquote(parts.path)), url)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise StoreError(f"invalid store URL {url!r}: no host")
        return HttpStore(url)
    if parts.scheme == "zdb":
        if not parts.hostname:
            raise StoreError(f"invalid store URL {url!r}: expected zdb://[user[:pass]@]host[:port][/ns]")
        namespace = unquote(parts.path.strip("/")) or "default"
        if "/" in namespace or any(c.isspace() for c in namespace):
            raise StoreError(f"invalid store URL {url!r}: namespace {namespace!r} is not one name")
        password = unquote(parts.password) if parts.password else None
        return ZdbStore(parts.hostname, port or ZDB_DEFAULT_PORT, namespace, password, url=url)
    raise StoreError(f"unsupported store URL {url!r}: expected dir://, http://, https:// or zdb://")


@dataclass(frozen=True)
class Route:
    """Blocks whose first id byte lies in ``start..end`` (inclusive) live in the store at ``url``."""

    start: int
    end: int
    url: str

    def __post_init__(self) -> None:
        if not (0 <= self.start <= self.end <= 255):
            raise StoreError(
                f"route {self.start}-{self.end} -> {self.url}: expected 0 <= start <= end <= 255"
            )

    def covers(self, block_id: bytes) -> bool:
        return bool(block_id) and self.start <= block_id[0] <= self.end


class Router:
    """A store over several stores: reads try matching routes in order, writes go to all of them."""

    def __init__(self, routes: Sequence[Route], *, opener: Callable[[str], BlockStore] = open_store) -> None:
        self.routes = tuple(routes)
        self.url = " ".join(
            r.url if (r.start, r.end) == (0, 255) else f"{r.start:02x}-{r.end:02x}={r.url}"
            for r in self.routes
        )
        self._opener = opener
        self._stores: dict[str, BlockStore] = {}

    @classmethod
    def single(cls, url: str) -> Router:
        router = cls([Route(0, 255, url)])
        router._store(url)  # a bad URL fails here, not at the first block
        return router

    def _store(self, url: str) -> BlockStore:
        store = self._stores.get(url)
        if store is None:
            store = self._stores[url] = self._opener(url)
        return store

    def _matching(self, block_id: bytes) -> list[BlockStore]:
        urls = dict.fromkeys(r.url for r in self.routes if r.covers(block_id))
        return [self._store(url) for url in urls]

    async def get(self, block_id: bytes) -> bytes:
        stores = self._matching(block_id)
        errors: list[StoreError] = []
        for store in stores:
            try:
                return await store.get(block_id)
            except BlockMissing:
                continue
            except StoreError as exc:
                errors.append(_store_failed(store, block_id, exc))
        raise _not_found(block_id, stores, errors)

    def store_for(self, route: Route) -> BlockStore:
        """The store ``route`` reads from (opened on first use)."""
        return self._store(route.url)

    def is_local(self) -> bool:
        """True when every route's store reads blocks without the event loop (all ``dir://``)."""
        return all(isinstance(self._store(r.url), LocalStore) for r in self.routes)

    def read_block(self, block_id: bytes) -> bytes:
        """``get`` without the event loop, for a router that ``is_local``: same order, same errors."""
        return self.read_block_file(block_id)[0]

    def read_block_file(self, block_id: bytes) -> tuple[bytes, str | None]:
        """``read_block``, and the file the bytes came from when the store that had them has one."""
        stores = self._matching(block_id)
        errors: list[StoreError] = []
        for store in stores:
            try:
                return cast(LocalStore, store).read_block_file(block_id)  # is_local checked every store
            except BlockMissing:
                continue
            except StoreError as exc:
                errors.append(_store_failed(store, block_id, exc))
        raise _not_found(block_id, stores, errors)

    async def put(self, block_id: bytes, data: bytes) -> None:
        stores = self._matching(block_id)
        if not stores:
            raise StoreError(f"block {block_id.hex()}: no route covers first byte {block_id[0]:#04x}")
        for store in stores:
            await store.put(block_id, data)

    async def has(self, block_id: bytes) -> bool:
        for store in self._matching(block_id):
            if await store.has(block_id):
                return True
        return False

    async def aclose(self) -> None:
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.aclose()



def _store_failed(store: BlockStore, block_id: bytes, exc: StoreError) -> StoreError:
    """Log a store that failed (the next route is tried) and hand its error back for the summary."""
    log.warning("block store failed", extra={"store": store.url, "block": block_id.hex(), "reason": str(exc)})
    return exc


def _not_found(block_id: bytes, stores: list[BlockStore], errors: list[StoreError]) -> FlistError:
    """What a router raises when no store gave the block: the failures if any, else BlockMissing."""
    if errors:
        return StoreError(f"block {block_id.hex()}: " + "; ".join(str(e) for e in errors))
    return BlockMissing(block_id, [s.url for s in stores])
