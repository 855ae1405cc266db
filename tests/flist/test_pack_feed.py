"""pack_feed: the writer's thread gets the walk's entries in order, each only once final."""

from __future__ import annotations

import queue
import stat
import threading

import pytest

from zos_upgrade.flist.model import BlockRef, Entry, EntryKind
from zos_upgrade.flist.pack_feed import EntryFeed, FeedAbandoned

DIR, FILE = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644


def ref(n: int) -> BlockRef:
    return BlockRef(bytes([n]) * 16, bytes([n + 100]) * 16)


def reader(feed: EntryFeed) -> tuple[threading.Thread, queue.Queue[Entry | BaseException]]:
    """A thread iterating ``feed`` as the writer does; what it got, in order, on the queue."""
    got: queue.Queue[Entry | BaseException] = queue.Queue()

    def run() -> None:
        try:
            for entry in feed:
                got.put(entry)
        except BaseException as exc:  # the test checks what the writer would have seen
            got.put(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, got


def test_entries_come_in_walk_order_each_once_final() -> None:
    feed = EntryFeed()
    thread, got = reader(feed)
    feed.add(Entry("/", EntryKind.DIR, DIR))
    first = feed.add(Entry("/a", EntryKind.FILE, FILE, size=3), blocks=2)
    second = feed.add(Entry("/b", EntryKind.FILE, FILE, size=1), blocks=1)
    feed.add(Entry("/c", EntryKind.DIR, DIR))
    assert got.get(timeout=5) == Entry("/", EntryKind.DIR, DIR)
    # /b is final before /a: it still waits, the writer needs them in order
    feed.sealed([(second, 0, ref(3)), (first, 1, ref(2))])
    with pytest.raises(queue.Empty):
        got.get(timeout=0.2)
    feed.sealed([(first, 0, ref(1))])
    a, b, c = got.get(timeout=5), got.get(timeout=5), got.get(timeout=5)
    assert isinstance(a, Entry) and a.path == "/a" and a.blocks == (ref(1), ref(2))
    assert isinstance(b, Entry) and b.path == "/b" and b.blocks == (ref(3),)
    assert isinstance(c, Entry) and c.path == "/c"
    assert thread.is_alive()  # not closed: more entries may come
    feed.close()
    thread.join(timeout=5)
    assert not thread.is_alive() and got.empty()


def test_content_defined_lengths_come_with_the_blocks() -> None:
    feed = EntryFeed()
    index = feed.add(Entry("/f", EntryKind.FILE, FILE, size=9), blocks=2, lengths=(4, 5))
    feed.sealed([(index, 0, ref(1)), (index, 1, ref(2))])
    feed.close()
    (entry,) = list(feed)
    assert entry.blocks == (ref(1), ref(2)) and entry.lengths == (4, 5)


def test_an_abandoned_feed_stops_the_writer_instead_of_leaving_it_waiting() -> None:
    feed = EntryFeed()
    thread, got = reader(feed)
    feed.add(Entry("/", EntryKind.DIR, DIR))
    feed.add(Entry("/a", EntryKind.FILE, FILE, size=3), blocks=1)  # never sealed: the pack failed
    assert got.get(timeout=5) == Entry("/", EntryKind.DIR, DIR)
    feed.abandon()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert isinstance(got.get(timeout=5), FeedAbandoned) and got.empty()
