"""The pack's entries on their way to the flist writer, which runs in a thread of its own meanwhile.

Entries come out in the order the walk added them, each once it is final: a file once every one of
its blocks is sealed and stored. The v1 writer makes a directory's record as soon as the entries have
left that directory, so most of the flist is written while the workers still seal; after the last
block only the last directories, the database and the archive are left (issue 19: one core has work
then). The flist is still published only after the last block is stored: the writer cannot finish
before the feed has handed over its last entry.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator

from zos_upgrade.flist.model import BlockRef, Entry

__all__ = ["EntryFeed", "FeedAbandoned"]


class FeedAbandoned(Exception):
    """Raised in the writer's thread when the pack failed: the writer drops its temporary files."""


@dataclasses.dataclass(slots=True)
class _Unsealed:
    entry: Entry
    refs: list[BlockRef | None]
    lengths: tuple[int, ...]
    missing: int


class EntryFeed:
    """Entries added by the event loop, iterated by the writer's thread; both may run at once."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._final: list[Entry | None] = []  # None: a file still waiting for blocks
        self._unsealed: dict[int, _Unsealed] = {}
        self._closed = False
        self._abandoned = False

    def add(self, entry: Entry, blocks: int = 0, lengths: tuple[int, ...] = ()) -> int:
        """Add the walk's next entry (a file with ``blocks`` blocks still to seal); its index."""
        with self._ready:
            index = len(self._final)
            if blocks:
                self._final.append(None)
                self._unsealed[index] = _Unsealed(entry, [None] * blocks, lengths, blocks)
            else:
                self._final.append(entry)
                self._ready.notify()
            return index

    def sealed(self, blocks: Iterable[tuple[int, int, BlockRef]]) -> None:
        """Each (entry index, block number, ref) is stored: a job's blocks, under one lock."""
        with self._ready:
            for index, block, ref in blocks:
                unsealed = self._unsealed[index]
                unsealed.refs[block] = ref
                unsealed.missing -= 1  # each block of a file is sealed by one job, once
                if not unsealed.missing:
                    del self._unsealed[index]
                    refs = tuple(r for r in unsealed.refs if r is not None)
                    self._final[index] = dataclasses.replace(unsealed.entry, blocks=refs,
                                                             lengths=unsealed.lengths)
                    self._ready.notify()

    def close(self) -> None:
        """Every entry is added (the iteration ends once each is final)."""
        with self._ready:
            self._closed = True
            self._ready.notify()

    def abandon(self) -> None:
        """The pack failed: the iteration raises :class:`FeedAbandoned` instead of waiting on."""
        with self._ready:
            self._abandoned = True
            self._ready.notify()

    def __iter__(self) -> Iterator[Entry]:
        start = 0
        while True:
            with self._ready:
                while not self._abandoned and self._waiting(start):
                    self._ready.wait()
                if self._abandoned:
                    raise FeedAbandoned("the pack failed before the flist was complete")
                end = start
                while end < len(self._final) and self._final[end] is not None:
                    end += 1
                ready = self._final[start:end]
                if not ready:  # closed, every entry handed over
                    return
            # handed over outside the lock: the writer works while the event loop adds and seals
            for entry in ready:
                assert entry is not None
                yield entry
            start = end

    def _waiting(self, start: int) -> bool:
        if start < len(self._final):
            return self._final[start] is None
        return not self._closed
