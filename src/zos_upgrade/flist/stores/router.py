"""Routes and the router: a store over several stores, picked by the first byte of a block's id."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from zos_upgrade.flist.model import FlistError
from zos_upgrade.flist.stores.base import (
    BlockMissing,
    BlockStore,
    Fetched,
    LocalStore,
    StoreError,
    SyncUploader,
    get_many,
)
from zos_upgrade.flist.stores.registry import open_store

__all__ = ["Route", "Router"]

log = logging.getLogger(__name__)


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


# How long a store that failed a read is tried after the others (its replicas) before it is first again
DEMOTION_SECONDS = 30.0


class Router:
    """A store over several stores: reads try matching routes in order, writes go to all of them.

    A store that fails a read (down, refusing) is tried last for ``DEMOTION_SECONDS``: a replica that
    is down costs its connect retries once, not once per block.
    """

    def __init__(self, routes: Sequence[Route], *, opener: Callable[[str], BlockStore] = open_store,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.routes = tuple(routes)
        self._clock = clock
        self._demoted: dict[str, float] = {}  # url -> until when it is tried last
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

    def _read_order(self, block_id: bytes) -> list[BlockStore]:
        """The matching stores in route order, those demoted (failed lately) after the others."""
        stores = self._matching(block_id)
        if not self._demoted:
            return stores
        now = self._clock()
        for url, until in list(self._demoted.items()):
            if until <= now:
                self._demoted.pop(url, None)  # pop: reader threads (read_block_file) may race here
        return sorted(stores, key=lambda store: store.url in self._demoted)  # stable: route order kept

    def _failed(self, store: BlockStore, block_id: bytes, exc: StoreError) -> StoreError:
        self._demoted[store.url] = self._clock() + DEMOTION_SECONDS
        return _store_failed(store, block_id, exc)

    async def get(self, block_id: bytes) -> bytes:
        stores = self._read_order(block_id)
        errors: list[StoreError] = []
        for store in stores:
            try:
                return await store.get(block_id)
            except BlockMissing:
                continue
            except StoreError as exc:
                errors.append(self._failed(store, block_id, exc))
        raise _not_found(block_id, stores, errors)

    async def get_many(self, block_ids: Sequence[bytes]) -> Fetched:
        """``get`` of each of ``block_ids``, the stores asked in the same order, each store once for
        every block still wanted from it (a batch where it offers them); a block no store gave is
        its error, as ``get`` raises it."""
        by_order: dict[tuple[str, ...], list[bytes]] = {}
        stores_of: dict[tuple[str, ...], list[BlockStore]] = {}
        for block_id in dict.fromkeys(block_ids):
            stores = self._read_order(block_id)
            order = tuple(store.url for store in stores)
            by_order.setdefault(order, []).append(block_id)
            stores_of[order] = stores
        out: Fetched = {}
        for order, wanted in by_order.items():
            stores, errors = stores_of[order], {b: list[StoreError]() for b in wanted}
            for store in stores:
                if not wanted:
                    break
                try:
                    found = await get_many(store, wanted)
                except StoreError as exc:  # the store failed them all (a batch answer off the wire)
                    found = dict.fromkeys(wanted, exc)
                still = []
                for block_id in wanted:
                    got = found.get(block_id)
                    if isinstance(got, bytes):
                        out[block_id] = got
                        continue
                    if isinstance(got, StoreError) and not isinstance(got, BlockMissing):
                        errors[block_id].append(self._failed(store, block_id, got))
                    elif isinstance(got, Exception) and not isinstance(got, BlockMissing):
                        raise got  # not a store's failure: as ``get`` lets it through
                    still.append(block_id)
                wanted = still
            for block_id in wanted:
                out[block_id] = _not_found(block_id, stores, errors[block_id])
        return out

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
        stores = self._read_order(block_id)
        errors: list[StoreError] = []
        for store in stores:
            try:
                return cast(LocalStore, store).read_block_file(block_id)  # is_local checked every store
            except BlockMissing:
                continue
            except StoreError as exc:
                errors.append(self._failed(store, block_id, exc))
        raise _not_found(block_id, stores, errors)

    async def put(self, block_id: bytes, data: bytes) -> None:
        stores = self._matching(block_id)
        if not stores:
            raise StoreError(f"block {block_id.hex()}: no route covers first byte {block_id[0]:#04x}")
        for store in stores:
            await store.put(block_id, data)

    def uploads_sync(self) -> bool:
        """True when every route's store also writes from a worker thread (``upload_missing``)."""
        return all(isinstance(self._store(r.url), SyncUploader) for r in self.routes)

    def upload_missing(self, blocks: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        """``put`` of each block some matching store lacks, one batch per store, for a router that
        ``uploads_sync``; a block is reported uploaded when any of its stores took it."""
        uploaded = [False] * len(blocks)
        per_store: dict[str, list[int]] = {}
        for index, (block_id, _) in enumerate(blocks):
            urls = [r.url for r in self.routes if r.covers(block_id)]
            if not urls:
                raise StoreError(f"block {block_id.hex()}: no route covers first byte {block_id[0]:#04x}")
            for url in dict.fromkeys(urls):
                per_store.setdefault(url, []).append(index)
        for url, indexes in per_store.items():
            store = cast(SyncUploader, self._store(url))  # uploads_sync checked every store
            for index, took in zip(indexes, store.upload_missing([blocks[i] for i in indexes]), strict=True):
                uploaded[index] = uploaded[index] or took
        return uploaded

    async def has(self, block_id: bytes) -> bool:
        for store in self._read_order(block_id):
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
