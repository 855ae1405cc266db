"""Writing strategy: every regular file in a worker thread of this process (the default on one core,
and what the process strategy falls back to).

A thread creates the file and writes its blocks in order: from the cache, else from a local store.
A file wholly in the cache or in a ``dir://`` store (every file of a warm run) is written, sealed
and closed in that one hop, a big one with direct I/O (``directio``), so the flushes find little
left to write. With a remote store the thread stops at the first block it lacks and names the
blocks of the next window the cache lacks; those are fetched on the event loop
(``remote_blocks``) and the next hop writes them, and so on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable

from zos_upgrade.flist.directio import DirectWriter
from zos_upgrade.flist.file_writer import Progress, WriteContext
from zos_upgrade.flist.filewrite import Step, content_hasher, create_temp, write_blocks
from zos_upgrade.flist.model import Entry
from zos_upgrade.flist.stores import LocalStore

__all__ = ["ThreadFileWriter"]


class ThreadFileWriter:
    """Writes each file it takes in a worker thread, within the run's task window."""

    def __init__(self, context: WriteContext) -> None:
        self._context = context
        self._direct = threading.local()  # each worker thread's DirectWriter

    async def add(self, entry: Entry, parts: list[str]) -> None:
        await self._context.window.start(self.write, entry, parts, self._context.names.next(parts))

    async def finish(self) -> None:
        await self._context.window.join()

    async def stop(self) -> None:
        self._context.window.cancel()
        await self._context.window.settle()

    async def write(self, entry: Entry, parts: list[str], tmp: str) -> None:
        """Write one file under the temporary name ``tmp``; the durability step renames it later."""
        context = self._context
        loop = asyncio.get_running_loop()
        on_bytes = None if context.progress is None else _threadsafe(loop, context.progress)
        step = await _in_thread(self._create_and_write, entry, parts, tmp, on_bytes, owns_fd=True)
        try:
            context.count(step.tally)
            while not step.done:
                async with context.remote.window([entry.blocks[i].id for i in step.missing]) as window:
                    step = await _in_thread(self._write_more, entry, step, window, on_bytes, owns_fd=False)
                context.count(step.tally)
        finally:
            os.close(step.fd)
        context.closed(entry, parts, tmp, step.tally.digest, synced=context.sync_in_writer)

    def _synced(self, step: Step) -> Step:
        """``step``, its file fsynced when it is complete and the run asks writers to."""
        if step.done and self._context.sync_in_writer:
            os.fsync(step.fd)
        return step

    def _write_more(self, entry: Entry, step: Step, window: LocalStore, on_bytes: Progress | None) -> Step:
        """The next hop: the blocks of ``window`` on from where ``step`` stopped."""
        context = self._context
        return self._synced(write_blocks(context.source, entry, step.fd, step.blocks, step.written, window,
                                         context.as_root, on_bytes, None, step.hasher))

    def _create_and_write(self, entry: Entry, parts: list[str], tmp: str, on_bytes: Progress | None) -> Step:
        """Create the file under its temporary name and write what the cache and the local store hold."""
        context = self._context
        fd = create_temp(context.fds, parts, tmp)
        try:
            # direct I/O only where the file is written in this one hop: from a local store
            direct = self._thread_direct_writer() if context.local is not None else None
            hasher = content_hasher() if context.digests is not None else None
            store = context.local if context.local is not None else context.remote.prefetched
            return self._synced(write_blocks(context.source, entry, fd, 0, 0, store, context.as_root,
                                             on_bytes, direct, hasher))
        except BaseException:
            os.close(fd)
            raise

    def _thread_direct_writer(self) -> DirectWriter:
        """The calling worker thread's direct-I/O buffer for this run."""
        writer: DirectWriter | None = getattr(self._direct, "writer", None)
        if writer is None:
            writer = self._direct.writer = DirectWriter()
        return writer


def _threadsafe(loop: asyncio.AbstractEventLoop, progress: Progress) -> Progress:
    """``progress`` called from a worker thread, run on the event loop's thread."""
    def report(count: int) -> None:
        loop.call_soon_threadsafe(progress, count)
    return report


async def _in_thread(fn: Callable[..., Step], *args: object, owns_fd: bool) -> Step:
    """``asyncio.to_thread`` that, when cancelled, still waits for the thread before re-raising:
    nobody may clean the destination up while a thread writes into it. With ``owns_fd`` (the hop that
    creates the file) it also closes the fd the thread returns, which the caller never sees."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            step = await job
            if owns_fd:
                os.close(step.fd)
        raise
