"""Blocks of a materialize fetched from a remote store on the event loop, each once however many
files want it: handed to a worker thread a window at a time, or prefetched into the block cache.

A thread writing a file stops at the first block it lacks; :meth:`RemoteBlocks.window` fetches the
next window of blocks the cache lacks for the thread's next hop. For file-writer processes, which
read the cache alone, :meth:`RemoteBlocks.cache_missing` fetches the blocks of a file the cache
lacks into it first, their ids checked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from zos_upgrade.flist.filewrite import FETCH_WINDOW, BlockSource, NotFetched, Tally
from zos_upgrade.flist.model import Entry
from zos_upgrade.flist.report import MaterializeReport, add_tally
from zos_upgrade.flist.stores import BlockStore
from zos_upgrade.flist.stores.base import get_many

__all__ = ["PREFETCH_MAX_BLOCKS", "FetchedBlocks", "RemoteBlocks"]

# A partial run (an upgrade's changed files) lacking at most this many blocks fetches them all at
# once before any file is written, and every file is then written in one hop: few blocks, so the
# per-file round trips (a hop, a fetch, a hop) cost more than the blocks. Held in memory until the
# run ends: at most this many stored blocks (16 MiB of 512 KiB blocks).
PREFETCH_MAX_BLOCKS = 32


@dataclass
class FetchedBlocks:
    """Blocks a remote store returned on the event loop, offered to a worker thread as a local store:
    the thread verifies, caches and writes them exactly as it does blocks read from ``dir://``."""

    url: str
    blocks: dict[bytes, bytes | BaseException]

    def read_block_file(self, block_id: bytes) -> tuple[bytes, str | None]:
        got = self.blocks.get(block_id)
        if got is None:
            raise NotFetched(block_id.hex())
        if isinstance(got, BaseException):
            raise got
        return got, None  # fetched over the network: no file to link


@dataclass
class _Shared:
    """One block fetch and how many files' windows wait for it."""

    task: asyncio.Future[bytes]
    users: int = 0


class RemoteBlocks:
    """The fetches of one run from ``store``: at most ``concurrency`` at a time, one per block id
    while anyone waits for it. What they fetch is counted in ``report``."""

    def __init__(self, store: BlockStore, concurrency: int, source: BlockSource,
                 report: MaterializeReport) -> None:
        self._store = store
        self._limit = asyncio.Semaphore(concurrency)
        self._source = source
        self._report = report
        # blocks being fetched, by id, and every such fetch (to wait for on failure)
        self._inflight: dict[bytes, _Shared] = {}
        self._fetches: set[asyncio.Future[bytes]] = set()
        # what ``prefetch`` fetched, served to the threads' first hop like a local store
        self.prefetched: FetchedBlocks | None = None

    async def prefetch(self, entries: list[Entry]) -> None:
        """Fetch the blocks of ``entries`` the run lacks, all at once, when there are at most
        :data:`PREFETCH_MAX_BLOCKS` (else the windows fetch them as the files need them). A block
        that failed is kept as its error: the file that needs it fails as it would have."""
        wanted = list(dict.fromkeys(ref.id for entry in entries for ref in entry.blocks
                                    if self._source.lacks(ref)))
        if not wanted or len(wanted) > PREFETCH_MAX_BLOCKS:
            return
        async with self._limit:  # one request where the store answers batches
            got: dict[bytes, bytes | BaseException] = dict(await get_many(self._store, wanted))
        self.prefetched = FetchedBlocks(self._store.url, got)

    @contextlib.asynccontextmanager
    async def window(self, block_ids: list[bytes]) -> AsyncIterator[FetchedBlocks]:
        """The stored bytes (or the error) of each of ``block_ids``, held until the caller's hop has
        verified and cached them. A block another file is fetching, or has fetched and not cached
        yet, is not fetched again: both use the one request."""
        wanted = list(dict.fromkeys(block_ids))
        for block_id in wanted:
            shared = self._inflight.get(block_id)
            if shared is None:
                task = asyncio.ensure_future(self._fetch_stored(block_id))
                self._fetches.add(task)
                task.add_done_callback(self._fetches.discard)
                shared = self._inflight[block_id] = _Shared(task)
            shared.users += 1
        try:
            await asyncio.wait([self._inflight[b].task for b in wanted])
            got: dict[bytes, bytes | BaseException] = {}
            for block_id in wanted:
                fetch = self._inflight[block_id].task
                error = fetch.exception()
                got[block_id] = error if error is not None else fetch.result()
            yield FetchedBlocks(self._store.url, got)
        finally:
            for block_id in wanted:
                shared = self._inflight[block_id]
                shared.users -= 1
                if shared.users == 0:
                    del self._inflight[block_id]
                    if not shared.task.done():
                        shared.task.cancel()
                    elif not shared.task.cancelled():
                        shared.task.exception()  # retrieved: its users got it above

    async def cache_missing(self, entry: Entry) -> int:
        """Fetch the blocks of ``entry`` the cache lacks into it, a window at a time; count them as
        fetched (a block another file cached meanwhile counts as neither). Returns how many there were."""
        first_of = {}
        for index, ref in enumerate(entry.blocks):
            if ref.id not in first_of and self._source.lacks(ref):
                first_of[ref.id] = index
        missing = list(first_of.values())
        for start in range(0, len(missing), FETCH_WINDOW):
            indices = missing[start:start + FETCH_WINDOW]
            async with self.window([entry.blocks[i].id for i in indices]) as fetched:
                tally = await asyncio.to_thread(self._cache_window, entry, indices, fetched)
            add_tally(self._report, tally)
        return len(missing)

    def _cache_window(self, entry: Entry, indices: list[int], fetched: FetchedBlocks) -> Tally:
        count = downloaded = 0
        for index in indices:
            size = self._source.cache_stored(fetched, entry, index)
            if size is not None:
                count += 1
                downloaded += size
        return Tally(fetched=count, downloaded=downloaded)

    async def settle(self) -> None:
        """After a failure: wait for every fetch still running (cancelled or not) to end."""
        await asyncio.gather(*self._fetches, return_exceptions=True)

    async def _fetch_stored(self, block_id: bytes) -> bytes:
        async with self._limit:
            return await self._store.get(block_id)
