"""The one interface through which materialize's driver has its regular files written, whatever the
strategy (worker threads, file-writer processes), and what every strategy of one run shares.

A strategy takes each file the walk meets (``add``), writes it under a temporary name in its
directory from verified blocks, sized and sealed (digesting its content on the way when the run
asks for digests), closes it and reports it to :meth:`WriteContext.closed`; renaming it is the
durability step's job, never a strategy's. The driver calls ``finish`` after the last file, or
``stop`` after a failure: once ``stop`` returns, nothing writes into the destination any more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from zos_upgrade.flist.durability import Durability, TempNames
from zos_upgrade.flist.filewrite import BlockSource, DirFds, Tally, WrittenFile
from zos_upgrade.flist.model import Entry
from zos_upgrade.flist.remote_blocks import RemoteBlocks
from zos_upgrade.flist.report import MaterializeReport, add_tally
from zos_upgrade.flist.stores import LocalStore

__all__ = ["FileWriter", "Progress", "TaskWindow", "WriteContext"]

Progress = Callable[[int], None]


class FileWriter(Protocol):
    """A strategy for writing a materialize's regular files."""

    async def add(self, entry: Entry, parts: list[str]) -> None:
        """Take the checked regular file ``entry`` (split into ``parts``); it may be written later.
        Raises the failure of a file taken earlier, so a bad file stops the walk early."""

    async def finish(self) -> None:
        """After the last ``add``: return once every file taken is written and closed."""

    async def stop(self) -> None:
        """After a failure: cancel what is pending and return once nothing writes any more."""


class TaskWindow:
    """The file tasks of one run: at most ``size`` at a time; a task that failed is raised by the
    next ``start``, so the walk stops at the first bad file instead of after the whole tree."""

    def __init__(self, size: int) -> None:
        self._slots = asyncio.Semaphore(size)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, write: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Run ``write(*args)`` as a task once a slot is free."""
        await self._slots.acquire()
        task = asyncio.create_task(write(*args))
        task.add_done_callback(lambda _t: self._slots.release())
        self._tasks.add(task)
        for done in [t for t in self._tasks if t.done()]:
            self._tasks.discard(done)
            done.result()

    async def join(self) -> None:
        """Wait for every task; raises the first failure."""
        if self._tasks:
            await asyncio.gather(*self._tasks)

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def settle(self) -> None:
        """Wait for every task to end, whatever its outcome."""
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class WriteContext:
    """What the strategies of one run share: the destination's descriptors, where verified blocks
    come from (cache, then a local store or remote fetches), temporary names, the task window, and
    where a written file and its counts go."""

    fds: DirFds
    source: BlockSource
    local: LocalStore | None  # the store itself when it reads blocks without the event loop
    remote: RemoteBlocks
    durability: Durability
    names: TempNames
    window: TaskWindow
    report: MaterializeReport
    progress: Progress | None
    as_root: bool
    digests: dict[str, WrittenFile] | None = None  # flist path -> what was written, when asked
    # a partial run of few files: each writer thread fsyncs its file as it closes it, in parallel,
    # and the durability step only renames (it would fsync each one in turn: FSYNC_EACH_UP_TO)
    sync_in_writer: bool = False

    def count(self, tally: Tally) -> None:
        add_tally(self.report, tally)

    def closed(self, entry: Entry, parts: list[str], tmp: str, digest: str = "", *,
               synced: bool = False) -> None:
        """``entry`` is written, sealed and closed as ``tmp`` (its content digest ``digest``, as text,
        when asked for; ``synced``: fsynced too): it waits for the next flush and rename."""
        self.durability.closed(parts, tmp, entry.size, synced=synced)
        self.report.files += 1
        if self.digests is not None:
            self.digests[entry.path] = WrittenFile.parse(digest)
