"""``http(s)://host/path``: read-only blocks over HTTP, ``GET <url>/<hex[0:2]>/<hex>``, on 404
``GET <url>/<hex>`` (the 0-hub ``/blocks`` layout or any static file server).

asyncio is imported when a store is made, httpx and the transport at its first request, not with
this module: a file-writer process (``writer_child``) loads the store modules but never opens this
one, and a materialize whose file-writer processes fetch every block never loads httpx.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import SplitResult

from zos_upgrade.flist.stores.base import (
    MAX_STORED_BYTES,
    BlockMissing,
    Fetched,
    StoreError,
    block_hex,
    get_each,
)
from zos_upgrade.flist.stores.batch_wire import (
    BATCH_NAME,
    CONTENT_TYPE,
    MAX_BATCH_IDS,
    BadBatch,
    head_bytes,
    query,
    split_frames,
)

if TYPE_CHECKING:
    import httpx

    from zos_upgrade import net

__all__ = ["HttpStore", "open_http_url"]

# what a server without the batch GET answers it with: the blocks are then fetched one by one
_NO_BATCH = (400, 404, 405, 501)


def _proxied() -> bool:
    """True when the environment names an HTTP proxy: then httpx's own transport goes through it."""
    import urllib.request

    proxies = urllib.request.getproxies()
    return "http" in proxies or "all" in proxies


class HttpStore:
    """Read-only blocks over HTTP: the 0-hub ``/blocks`` layout or any static file server."""

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

        self.url = url
        self._base = url.rstrip("/")
        self._limit = asyncio.Semaphore(concurrency)
        # one policy (and its jitter source) for every block; a block is at most ~600 KiB, so a whole
        # fetch of one may take 90 s at most, each try 30 s, and a trickle below 1 KiB/s is cut off
        self._retry = retry
        self._timeout = timeout
        self._own_client = client is None
        self._proxied = _proxied()
        # a file-writer process may fetch from this store itself (``http_blocking``): plain http,
        # no proxy, and no client of the caller's (its settings would not travel)
        self.child_url = url if client is None and url.startswith("http://") and not self._proxied else None
        # made at the first request: when file-writer processes fetch every block, this process
        # never loads httpx (a third of a second of imports at start-up)
        self._client = client
        self._batches: bool | None = None  # whether the server answers batch GETs (None: not asked)

    def _http(self) -> tuple[httpx.AsyncClient, net.RetryPolicy]:
        import httpx

        from zos_upgrade import net
        from zos_upgrade.http11 import LeanTransport

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False,
                                             transport=None if self._proxied else LeanTransport())
        if self._retry is None:
            self._retry = net.RetryPolicy(deadline=30.0, total=90.0)
        return self._client, self._retry

    async def _request(self, method: str, url: str, *, max_bytes: int = MAX_STORED_BYTES,
                       expect: tuple[int, ...] = (200, 404, 405)) -> net.FetchResult:
        from zos_upgrade import net

        client, retry = self._http()
        async with self._limit:
            try:
                return await net.fetch(client, url, method=method, max_bytes=max_bytes, expect=expect,
                                       retry=retry)
            except net.TransportError as exc:
                # the message names the URL, and for a slow store the bytes received and the time taken
                raise StoreError(f"{self.url}: {exc}") from exc

    async def _lookup(self, method: str, block_id: bytes) -> net.FetchResult | None:
        name = block_hex(block_id)
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

    async def get_many(self, block_ids: Sequence[bytes]) -> Fetched:
        """Each of ``block_ids`` (BlockMissing for one the store lacks): up to ``MAX_BATCH_IDS`` in
        one batch GET (``batch_wire``) while the server answers them, else one GET each."""
        out: Fetched = {}
        for start in range(0, len(block_ids), MAX_BATCH_IDS):
            if self._batches is False:
                break
            out.update(await self._batch(list(block_ids[start:start + MAX_BATCH_IDS])))
        out.update(await get_each(self.get, [b for b in block_ids if b not in out]))
        return out

    async def _batch(self, block_ids: list[bytes]) -> Fetched:
        """One batch GET; nothing when the server offers none (then no other is asked for)."""
        url = f"{self._base}/{BATCH_NAME}?{query(block_ids)}"
        cap = sum(head_bytes(b) for b in block_ids) + len(block_ids) * MAX_STORED_BYTES
        result = await self._request("GET", url, max_bytes=cap, expect=(200, *_NO_BATCH))
        if result.status != 200 or result.headers.get("content-type") != CONTENT_TYPE:
            self._batches = False  # a store without batches, or a server answering any path with a page
            return {}
        try:
            frames = split_frames(result.body, block_ids, MAX_STORED_BYTES)
        except BadBatch as exc:
            raise StoreError(f"{self.url}: a batch answer off the wire: {exc}") from exc
        self._batches = True
        return {b: BlockMissing(b, [self.url]) if data is None else data
                for b, data in zip(block_ids, frames, strict=True)}

    async def put(self, block_id: bytes, data: bytes) -> None:
        raise StoreError(f"{self.url}: http(s) stores are read-only; cannot write block {block_id.hex()}")

    async def has(self, block_id: bytes) -> bool:
        return await self._lookup("HEAD", block_id) is not None

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()


def open_http_url(url: str, parts: SplitResult) -> HttpStore:
    """The store ``http(s)://host[/path]`` names."""
    if not parts.hostname:
        raise StoreError(f"invalid store URL {url!r}: no host")
    return HttpStore(url)
