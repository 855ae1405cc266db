"""Writing strategy: regular files written by file-writer processes (``writer_pool``), in jobs of
several files, one process per core: one Python process cannot use a second core.

Children reopen a ``dir://`` store themselves; with a remote store this process fetches the blocks
a job's files lack into the block cache first (``remote_blocks``) and the children write from the
cache alone. Worker threads (:class:`ThreadFileWriter`) write whatever the children cannot take: the
files met before the pool is worth starting or while it starts (automatic mode), every file once no
child is left, and a file a child missed a cached block for.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace

from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.file_writer import WriteContext
from zos_upgrade.flist.filewrite import NotCached
from zos_upgrade.flist.model import Entry
from zos_upgrade.flist.thread_writer import ThreadFileWriter
from zos_upgrade.flist.writer_child import StoreSpec, fetches_remote
from zos_upgrade.flist.writer_pool import WriterPool
from zos_upgrade.tasks import all_or_cancel

__all__ = ["ProcessFileWriter"]

log = logging.getLogger(__name__)

# Automatic (``workers=None``): file-writer processes are started once the walk has met this much
# file data or this many files: below that, starting them (~0.1 s and a core each) costs more than
# they win. Low on purpose: until the children are ready, threads write, at a higher CPU cost per
# byte (a 200 MB tree, measured: 16 MiB here cost the parent 0.3 s more CPU than 2 MiB).
_POOL_AFTER_BYTES = 4 * 1024 * 1024
_POOL_AFTER_FILES = 100

# Files go to a file-writer process in jobs of up to this many files or bytes (a bigger file is a
# job alone): one message, one answer and one task per job instead of per file (the parent used a
# third of a core on that with one file per job); small enough that the last jobs spread evenly.
_JOB_FILES = 32
_JOB_BYTES = 1024 * 1024


def _auto_workers() -> int:
    """One file-writer process per usable core, none on a single core (it would only add a process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 8) if cores > 1 else 0


class ProcessFileWriter:
    """Hands files to ``workers`` file-writer processes (``None``: one per core, started once the
    tree proves big enough; a number: that many, started with the first file, and files wait for a
    child rather than go to threads while they start)."""

    def __init__(self, context: WriteContext, threads: ThreadFileWriter, workers: int | None,
                 cache: BlockCache | None, store: StoreSpec) -> None:
        self._context = context
        self._threads = threads
        self._size = _auto_workers() if workers is None else workers
        # children that fetch from an http:// store themselves (below) are started with the first
        # file and waited for: the threads' path would have this process load httpx and fetch on
        # its event loop, which costs more than starting the children
        self._wait_for_pool = workers is not None or fetches_remote(store)
        self._cache = cache
        self._store = store  # how a child reopens the store
        # children fetch from an http:// store themselves: nothing is fetched here first
        self._children_fetch = fetches_remote(store)
        self._pool: WriterPool | None = None
        self._seen = (0, 0)  # (bytes, files) of regular files taken so far
        self._job: list[tuple[Entry, list[str]]] = []  # files for the next job
        self._job_bytes = 0

    async def add(self, entry: Entry, parts: list[str]) -> None:
        pool = await self._pool_for(entry)
        if pool is None:
            await self._threads.add(entry, parts)
            return
        self._job.append((entry, parts))
        self._job_bytes += entry.size
        if len(self._job) >= _JOB_FILES or self._job_bytes >= _JOB_BYTES:
            await self._context.window.start(self._write_job, pool, self._job)
            self._job, self._job_bytes = [], 0

    async def finish(self) -> None:
        if self._job and self._pool is not None:
            await self._context.window.start(self._write_job, self._pool, self._job)
            self._job, self._job_bytes = [], 0
        await self._context.window.join()
        if self._pool is not None:
            await self._pool.close()

    async def stop(self) -> None:
        self._context.window.cancel()  # first, so no file falls back to a thread once its child is gone
        if self._pool is not None:  # no child may write while the destination is cleaned up
            await self._pool.kill()
        await self._context.window.settle()

    async def _pool_for(self, entry: Entry) -> WriterPool | None:
        """The writer pool when ``entry`` should go to it (starting the pool once the walk has seen
        enough), or None to write it in this process: no pool, or (automatic) no child ready yet."""
        seen_bytes, seen_files = self._seen = (self._seen[0] + entry.size, self._seen[1] + 1)
        if self._pool is None:
            too_early = seen_bytes < _POOL_AFTER_BYTES and seen_files < _POOL_AFTER_FILES
            if not self._size or (too_early and not self._wait_for_pool):
                return None
            context = self._context
            self._pool = WriterPool(self._size, context.fds.root, self._cache, self._store, context.as_root,
                                    keep_fetched=context.source.keep_fetched,
                                    digests=context.digests is not None)
            await self._pool.start()
        if self._pool.failed or (not self._pool.ready and not self._wait_for_pool):
            return None  # no child left, or automatic and still starting: threads write meanwhile
        return self._pool

    async def _write_job(self, pool: WriterPool, files: list[tuple[Entry, list[str]]]) -> None:
        """Have a file-writer process write ``files`` as one job; the durability step renames them
        later.

        With a plain ``http://`` store the child fetches the blocks itself. With another remote
        store, the blocks the cache lacks are fetched and cached (their ids checked) here first, and
        the child writes from the cache alone. A file the child then misses a block for (the cached
        copy went bad and was dropped, or its own fetch failed), or every file when no child is
        left, is written by a worker thread instead.
        """
        context = self._context
        if context.local is None and not self._children_fetch:
            settled = await all_or_cancel(context.remote.cache_missing(entry) for entry, _parts in files)
        else:
            settled = [0] * len(files)
        named = [(entry, parts, context.names.next(parts)) for entry, parts in files]
        if not await pool.room():
            await all_or_cancel(self._threads.write(entry, parts, tmp) for entry, parts, tmp in named)
            return
        context.report.writer_processes = max(context.report.writer_processes, pool.running)
        outcomes = await asyncio.gather(*pool.submit([(entry, tmp) for entry, _parts, tmp in named]),
                                        return_exceptions=True)
        for outcome in outcomes:  # a failure fails the run; only a file missing from the cache is retried
            if isinstance(outcome, BaseException) and not isinstance(outcome, NotCached):
                raise outcome
        again = []
        for (entry, parts, tmp), fetched, outcome in zip(named, settled, outcomes, strict=True):
            if isinstance(outcome, NotCached):
                log.warning(
                    "a block the file writer process needed is not in the cache (or it could not fetch it); "
                    "writing the file here",
                    extra={"entry": entry.path, "block_index": outcome.index},
                )
                again.append(self._threads.write(entry, parts, context.names.next(parts)))
            elif not isinstance(outcome, BaseException):
                # the blocks fetched (or waited for) above were counted then, not again as read from the cache
                context.count(replace(outcome, from_cache=outcome.from_cache - fetched))
                if context.progress is not None:
                    context.progress(outcome.added)
                context.closed(entry, parts, tmp, outcome.digest)
        await all_or_cancel(again)
