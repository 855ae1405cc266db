"""The loop a file-writer process of a materialize runs, and the wire it speaks with its parent.

The parent (``writer_pool``) starts this module as ``python -P -m zos_upgrade.flist.writer_child``
with its own ``sys.path``, sends one setup message (the destination's descriptor, which it passes
down, the block cache, how to reopen its ``dir://`` store, whether to set owners, its pid), then jobs
of one or more files (many small files travel together: one message and one answer each way per
file cost the parent more than the writing). For each file of a job the child creates it under the
temporary name it is given, in a directory reached from the destination's descriptor with
``O_NOFOLLOW``, writes it from blocks it verifies itself, sizes and seals it and closes it; then it
answers the job: each file's counts (with its content digest when the setup asks for digests) or
error, plus the log records the job produced. It never
renames, deletes or creates anything else. It dies with its parent (``PR_SET_PDEATHSIG``) and ends
when its stdin closes.

Wire: 4-byte big-endian length + ``marshal`` payload, both ways (the two ends are the same program,
so marshal's lack of a stable format across Python versions does not matter). This module imports
neither asyncio nor httpx: a child's imports take ~0.09 s, not ~0.13 s (measured with this module
run on an empty stdin; the stdlib sockets of ``http_blocking`` cost no measurable part of that).

With a plain ``http://`` store the child fetches its files' blocks itself (``http_blocking``): a
thread reads jobs as they arrive and has their blocks prefetched at once, so the network works on
the next job while this one is written; a block it cannot fetch the simple way makes the file
``NotCached``, and the parent fetches and writes that file itself.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import queue
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from zos_upgrade.flist.blocks import BlockCorrupt
from zos_upgrade.flist.cache import BlockCache, CacheError
from zos_upgrade.flist.directio import DirectWriter
from zos_upgrade.flist.filewrite import (
    BlockSource,
    DirFds,
    FileBlockMissing,
    NotCached,
    Tally,
    content_hasher,
    create_temp,
    write_blocks,
)
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError, HostileFlist
from zos_upgrade.flist.stores import (
    BlockMissing,
    BlockStore,
    DirStore,
    HttpStore,
    LocalStore,
    Route,
    Router,
    StoreError,
)
from zos_upgrade.flist.stores.http_blocking import BlockingHttpReader

__all__ = [
    "CACHE_ONLY",
    "HEADER",
    "StoreSpec",
    "describe_error",
    "describe_store",
    "fetches_remote",
    "frame",
    "job_file",
    "main",
    "open_store_spec",
    "read_message",
    "rebuild_error",
    "serve",
    "write_message",
]

log = logging.getLogger(__name__)

HEADER = struct.Struct(">I")

StoreSpec = tuple[Any, ...]


# a child of a run whose store is remote: it writes from the block cache alone, which its parent fills
CACHE_ONLY: StoreSpec = ("cache",)


def describe_store(store: BlockStore) -> StoreSpec | None:
    """How a child reopens ``store`` -- a ``dir://`` store, a plain ``http://`` one it can fetch from
    itself (``HttpStore.child_url``), or a router of those -- or None when it cannot."""
    if type(store) is DirStore:
        return ("dir", str(store.root), store.url)
    if type(store) is HttpStore and store.child_url is not None:
        return ("http", store.child_url)
    if isinstance(store, Router):
        routes: list[tuple[int, int, str, str | None]] = []
        for route in store.routes:
            opened = store.store_for(route)
            if type(opened) is DirStore:
                routes.append((route.start, route.end, route.url, str(opened.root)))
            elif type(opened) is HttpStore and opened.child_url is not None:
                routes.append((route.start, route.end, route.url, None))  # None: fetched over http
            else:
                return None
        return ("router", tuple(routes))
    return None


def fetches_remote(spec: StoreSpec | None) -> bool:
    """True when a child of ``spec`` fetches blocks over the network itself (an ``http://`` route)."""
    if spec is None:
        return False
    return spec[0] == "http" or (spec[0] == "router" and any(root is None for *_r, root in spec[1]))


def open_store_spec(spec: StoreSpec) -> LocalStore | None:
    if spec == CACHE_ONLY:
        return None
    if spec[0] == "dir":
        return DirStore(Path(spec[1]), spec[2])
    if spec[0] == "http":
        return BlockingHttpReader(spec[1])
    roots = {url: root for _start, _end, url, root in spec[1]}

    def opener(url: str) -> BlockStore:
        root = roots[url]
        return BlockingHttpReader(url) if root is None else DirStore(Path(root), url)

    return Router([Route(start, end, url) for start, end, url, _root in spec[1]], opener=opener)


def _prefetch(store: LocalStore | None, source: BlockSource, files: Iterable[tuple[Any, ...]]) -> None:
    """Start fetching the blocks of a job's files that the cache lacks, in the order they are
    written, from the ``http://`` store that will be asked for each (its first route)."""
    readers: dict[int, list[bytes]] = {}
    targets: dict[int, BlockingHttpReader] = {}
    for block_id in dict.fromkeys(i for file in files for i in file[7]):
        if not source.lacks_id(block_id):
            continue
        reader = _http_reader_for(store, block_id)
        if reader is not None:
            readers.setdefault(id(reader), []).append(block_id)
            targets[id(reader)] = reader
    for key, ids in readers.items():
        targets[key].prefetch(ids)


def _fetching_ahead(jobs: Iterable[tuple[Any, ...]], store: LocalStore | None,
                    source: BlockSource) -> Iterator[tuple[Any, ...]]:
    """``jobs``, read by a thread as the parent sends them, each job's blocks prefetched the moment
    it arrives: the next job's first blocks are fetched while this one's last are written (jobs
    are small, a MiB or so, so prefetching job by job left the network idle at every start)."""
    arrived: queue.Queue[tuple[Any, ...] | None] = queue.Queue()

    def read() -> None:
        try:
            for job in jobs:
                _prefetch(store, source, job[1])
                arrived.put(job)
        finally:
            arrived.put(None)  # the end of the input (or a broken pipe): the loop ends as before

    threading.Thread(target=read, name="job-reader", daemon=True).start()
    while (job := arrived.get()) is not None:
        yield job


def _http_reader_for(store: LocalStore | None, block_id: bytes) -> BlockingHttpReader | None:
    """The ``http://`` reader a read of ``block_id`` will get it from: the first route covering it,
    past ``dir://`` routes that do not hold it (a node rarely has the packer's ``dir://`` store the
    flist records: without this, a first install from the hub prefetched nothing)."""
    if isinstance(store, BlockingHttpReader):
        return store
    if isinstance(store, Router):
        for route in store.routes:
            if route.covers(block_id):
                opened = store.store_for(route)
                if isinstance(opened, DirStore) and not opened.holds_block(block_id):
                    continue
                return opened if isinstance(opened, BlockingHttpReader) else None
    return None


# --- errors cross the pipe as (kind, args), rebuilt from this fixed table -------------------------

_BY_MESSAGE: dict[str, type[FlistError]] = {
    cls.__name__: cls for cls in (HostileFlist, BlockCorrupt, CacheError, StoreError, FlistError)
}


def describe_error(exc: BaseException) -> tuple[str, tuple[Any, ...]]:
    if isinstance(exc, FileBlockMissing):
        return "FileBlockMissing", (exc.path, exc.index, exc.block_id, tuple(exc.stores))
    if isinstance(exc, NotCached):
        return "NotCached", (exc.path, exc.index)
    for cls in type(exc).__mro__:  # the nearest class the parent knows: a subclass travels as its base
        if _BY_MESSAGE.get(cls.__name__) is cls:
            return cls.__name__, (str(exc),)
    if isinstance(exc, OSError):
        return "OSError", (exc.errno, exc.strerror, exc.filename)
    text = "".join(traceback.format_exception(exc))
    return "other", (f"{type(exc).__name__}: {exc}", text)


def rebuild_error(kind: str, args: tuple[Any, ...]) -> BaseException:
    if kind == "FileBlockMissing":
        path, index, block_id, stores = args
        return FileBlockMissing(path, index, BlockMissing(block_id, list(stores)))
    if kind == "NotCached":
        return NotCached(*args)
    if kind in _BY_MESSAGE:
        return _BY_MESSAGE[kind](args[0])
    if kind == "OSError":
        return OSError(*args) if args[2] is not None else OSError(args[0], args[1])
    log.error("file writer process failed", extra={"traceback": args[1]})
    return FlistError(f"file writer process failed: {args[0]}")


_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_PLAIN = (str, int, float, bool, type(None))


class _Collect(logging.Handler):
    """Keeps this job's log records, to travel back with its reply and be logged by the parent."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, int, str, dict[str, Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        extra = {k: v if isinstance(v, _PLAIN) else str(v)
                 for k, v in record.__dict__.items() if k not in _RECORD_FIELDS}
        self.records.append((record.name, record.levelno, record.getMessage(), extra))

    def take(self) -> list[tuple[str, int, str, dict[str, Any]]]:
        records, self.records = self.records, []
        return records


def _die_with_parent(parent: int) -> bool:
    """Ask the kernel to kill us when the parent dies; False when it is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    return os.getppid() == parent


def read_message(stream: BinaryIO) -> Any:
    """The next message on ``stream``, or None at its end."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    return marshal.loads(stream.read(HEADER.unpack(head)[0]))


def frame(message: tuple[Any, ...]) -> bytes:
    """``message`` as it goes over the pipe: its length, then its marshal bytes."""
    payload = marshal.dumps(message)
    return HEADER.pack(len(payload)) + payload


def write_message(stream: BinaryIO, message: tuple[Any, ...]) -> None:
    stream.write(frame(message))
    stream.flush()


def job_file(entry: Entry, tmp: str) -> tuple[Any, ...]:
    """One file of a job, as it travels to the child."""
    return (entry.path, tmp, entry.size, entry.mode, entry.uid, entry.gid, entry.mtime,
            tuple(b.id for b in entry.blocks), tuple(b.key for b in entry.blocks))


def _write_one(fds: DirFds, source: BlockSource, store: LocalStore | None, as_root: bool,
               direct: DirectWriter, file: tuple[Any, ...], digest: bool = False) -> Tally:
    path, tmp, size, mode, uid, gid, mtime, ids, keys = file
    entry = Entry(path, EntryKind.FILE, mode, size, uid, gid, mtime,
                  blocks=tuple(BlockRef(i, k) for i, k in zip(ids, keys, strict=True)))
    parts = path[1:].split("/")
    fd = create_temp(fds, parts, tmp)
    try:
        step = write_blocks(source, entry, fd, 0, 0, store, as_root, direct=direct,
                            hasher=content_hasher() if digest else None)
    except StoreError as exc:
        if not fetches_remote_store(store):
            raise
        # the network failed us the simple way: the parent fetches this file's blocks itself, with
        # its retries, and writes the file again
        log.warning("file writer process could not fetch a block; its parent will",
                    extra={"entry": path, "reason": str(exc)})
        _unlink_temp(fds, parts, tmp)
        raise NotCached(path, -1) from exc
    finally:
        os.close(fd)
    if not step.done:  # only without a store: the parent writes this (short) file again itself
        _unlink_temp(fds, parts, tmp)
        raise NotCached(path, step.blocks)
    return step.tally


def _unlink_temp(fds: DirFds, parts: list[str], tmp: str) -> None:
    with fds.parent(parts) as pfd:
        os.unlink(tmp, dir_fd=pfd)


def fetches_remote_store(store: LocalStore | None) -> bool:
    if isinstance(store, BlockingHttpReader):
        return True
    return isinstance(store, Router) and any(isinstance(store.store_for(r), BlockingHttpReader)
                                             for r in store.routes)


def _counts(tally: Tally) -> tuple[int, int, int, int, bool, str]:
    # by hand: dataclasses.astuple deep-copies every field, a measurable cost once per file
    return tally.added, tally.from_cache, tally.fetched, tally.downloaded, tally.owner_skipped, tally.digest


def serve(jobs: Iterable[tuple[Any, ...]], setup: tuple[Any, ...], out: BinaryIO) -> None:
    """Write each job's files and answer the job, in order (the child's whole life after the setup).
    A job is ``(job id, files)``; its answer ``(job id, results, log records)`` holds ``("ok",
    counts)`` or ``("error", error)`` per file, in the job's order: one file failing does not stop
    the others (the parent decides what a failure means)."""
    dest_fd, cache_root, store_spec, as_root, _parent, *rest = setup
    keep_fetched = rest[0] if rest else True
    digest = bool(rest[1]) if len(rest) > 1 else False
    fds = DirFds(dest_fd, learn=True)
    source = BlockSource(None if cache_root is None else BlockCache(cache_root), keep_fetched=keep_fetched)
    store = open_store_spec(store_spec)
    remote = fetches_remote_store(store)
    direct = DirectWriter()
    with _collecting() as collect:
        write_message(out, ("ready", os.getpid()))
        try:
            for job_id, files in _fetching_ahead(jobs, store, source) if remote else jobs:
                results: list[tuple[str, Any]] = []
                for file in files:
                    try:
                        tally = _write_one(fds, source, store, as_root, direct, file, digest)
                        results.append(("ok", _counts(tally)))
                    except Exception as exc:  # every failure goes back to the parent, which decides
                        results.append(("error", describe_error(exc)))
                write_message(out, (job_id, tuple(results), collect.take()))
        finally:
            fds.close()


@contextlib.contextmanager
def _collecting() -> Iterator[_Collect]:
    """This package's log records go to a collector, not to stderr, until the block ends."""
    collect, package = _Collect(), logging.getLogger("zos_upgrade")
    level, propagate = package.level, package.propagate
    package.addHandler(collect)
    package.setLevel(logging.INFO)
    package.propagate = False
    try:
        yield collect
    finally:
        package.removeHandler(collect)
        package.setLevel(level)
        package.propagate = propagate


def main() -> None:
    stdin = sys.stdin.buffer
    # the replies get a descriptor of their own; anything else printing to stdout goes to stderr
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    setup = read_message(stdin)
    if setup is None or not _die_with_parent(setup[4]):
        return

    def jobs() -> Iterable[tuple[Any, ...]]:
        while (job := read_message(stdin)) is not None:
            yield job

    serve(jobs(), setup, stdout)


if __name__ == "__main__":
    main()
