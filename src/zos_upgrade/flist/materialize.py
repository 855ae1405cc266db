"""flist -> directory tree, through the verified block cache (SPEC 4.3, 5): the driver that wires the
parts of one run and walks the flist through them.

Safety rules, in the order they are enforced, and where:
- ``dest`` must be absent or empty; on any failure everything created under it is removed again
  (here).
- Every entry is created relative to an open descriptor of its parent directory, reached from ``dest``
  one component at a time with ``O_NOFOLLOW`` (``filewrite``): a symlink in the flist (``a -> /etc``)
  is never a way out (``a/passwd`` is refused as hostile, ``tree_checks``), whatever the reader let
  through.
- A symlink is created as a symlink; its target is data and is never followed (``nonfiles``).
- Device nodes are skipped unless explicitly allowed; sockets are always skipped (``tree_checks``).
- A file's content comes only from blocks whose id and key match; its size must be what the entry
  says (``filewrite``, for every writing strategy).
- Each file is written under a temporary name, flushed to disk, then renamed into place, in batches;
  a final ``syncfs`` makes the whole tree durable before we return; directory modes and mtimes are
  applied last, deepest first (``durability``).

Regular files go through one :class:`FileWriter`: worker threads (``thread_writer``), or, for a big
tree, file-writer processes (``process_writer``); blocks from a plain ``http://`` store are fetched
by those processes themselves (``stores.http_blocking``), from another remote store here on the
event loop (``remote_blocks``). Either way the walk, every check above, the renames and the flushes
stay in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.durability import FSYNC_EACH_UP_TO, Durability, TempNames
from zos_upgrade.flist.file_writer import FileWriter, Progress, TaskWindow, WriteContext
from zos_upgrade.flist.filewrite import (
    DIR_OPEN,
    BlockSource,
    DirFds,
    FileBlockMissing,
    LocalBlocks,
    WrittenFile,
)
from zos_upgrade.flist.formats import open_flist
from zos_upgrade.flist.model import Entry, EntryKind, FlistError
from zos_upgrade.flist.nonfiles import NonFileMaker
from zos_upgrade.flist.process_writer import ProcessFileWriter
from zos_upgrade.flist.reader import FlistReader
from zos_upgrade.flist.remote_blocks import RemoteBlocks
from zos_upgrade.flist.report import MaterializeReport
from zos_upgrade.flist.stores import BlockStore, LocalStore, Router
from zos_upgrade.flist.thread_writer import ThreadFileWriter
from zos_upgrade.flist.tree_checks import TreeChecks, split_path
from zos_upgrade.flist.writer_child import CACHE_ONLY, StoreSpec, describe_store

__all__ = ["FileBlockMissing", "MaterializeReport", "materialize"]

log = logging.getLogger(__name__)


async def materialize(
    flist: Path | FlistReader,
    dest: Path,
    *,
    store: BlockStore | None = None,
    cache: BlockCache | None = None,
    concurrency: int = 16,
    allow_devices: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    only: Callable[[str], bool] | None = None,
    local_blocks: LocalBlocks | None = None,
    keep_fetched: bool = True,
    digests: dict[str, WrittenFile] | None = None,
) -> MaterializeReport:
    """Write the tree ``flist`` describes into ``dest`` (absent or empty); return what was done.

    ``store`` defaults to the routes recorded in the flist. With a ``cache``, blocks it holds are not
    fetched, and fetched blocks are added to it. ``workers`` file-writer processes write the regular
    files when the store is ``dir://`` or there is a cache (they read blocks from the cache, which
    this process fills from a remote store): by default one per core once the tree proves big
    enough to repay starting them; ``0`` writes everything in this process; ``N`` starts N at once.

    ``only(path)`` (a path as the flist names it, ``/etc/motd``) selects the files, links and specials
    written, and only the directories they lie in are made; every entry is still checked.
    ``local_blocks`` serves verified plain blocks before the cache (the node's installed files:
    ``node_blocks``); they are not cached.

    With a plain ``http://`` store the processes fetch their files' blocks themselves.

    ``keep_fetched=False`` reads the cache but adds nothing to it: a fetched block goes straight
    into its file and nowhere else (a first install, where nothing is shared, writes each block
    once). Only for a caller that can get the blocks back without the network otherwise (from the
    tree it keeps): a later run from the same cache fetches them again.

    ``digests`` (a dict to fill) receives each written regular file's content digest by flist path
    (``WrittenFile``: blake2b-256, with the inode and mtime it was sealed with): taken by the writers
    from the blocks as they write them, so the caller need not read the tree again to name what it
    holds.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    dest = Path(dest)
    created_dest = _prepare_dest(dest)
    own_reader = not isinstance(flist, FlistReader)
    reader = flist if isinstance(flist, FlistReader) else open_flist(Path(flist))
    own_store = store is None
    try:
        if store is None:
            routes = tuple(reader.routes())
            if not routes:
                raise FlistError("the flist names no block store (no routes): pass a store explicitly")
            store = Router(routes)
        report = await _run(reader, dest, store, cache, concurrency, allow_devices, progress, workers,
                            only, local_blocks, keep_fetched, digests)
    except BaseException:
        _remove_created(dest, created_dest)
        raise
    finally:
        if own_store and store is not None:
            await store.aclose()
        if own_reader:
            reader.close()
    log.info("flist materialized", extra={"dest": str(dest), **report.__dict__})
    return report


async def _run(reader: FlistReader, dest: Path, store: BlockStore, cache: BlockCache | None,
               concurrency: int, allow_devices: bool, progress: Progress | None,
               workers: int | None, only: Callable[[str], bool] | None = None,
               local_blocks: LocalBlocks | None = None, keep_fetched: bool = True,
               digests: dict[str, WrittenFile] | None = None) -> MaterializeReport:
    """Wire the parts of one run, walk the flist through them, seal the tree."""
    local = _local_reader(store)  # first: opening a router's stores may fail
    # a child reopens a dir:// store, or fetches from a plain http:// one itself; with another
    # remote store it writes from the cache, which we fill (not when nothing may be kept there).
    # With blocks from the node's files, children never fetch: they would ask the store for blocks
    # the node holds (an upgrade stages few files; the parent's threads read the node's blocks)
    store_spec = describe_store(store) if local is not None or local_blocks is None else None
    if store_spec is None and cache is not None and keep_fetched:
        store_spec = CACHE_ONLY
    source = BlockSource(cache, local_blocks, keep_fetched=keep_fetched)
    fds = DirFds(os.open(dest, DIR_OPEN))
    try:
        as_root = os.geteuid() == 0
        report = MaterializeReport()
        checks = TreeChecks()
        durability = Durability(fds, checks.file_named)
        context = WriteContext(
            fds=fds, source=source, local=local, remote=RemoteBlocks(store, concurrency, source, report),
            durability=durability, names=TempNames(), window=TaskWindow(concurrency), report=report,
            progress=progress, as_root=as_root, digests=digests,
        )
        nonfiles = NonFileMaker(fds, checks, report, as_root=as_root, allow_devices=allow_devices)
        files = _file_writer(context, workers, cache, store_spec)
        root = await _walk(reader, checks, nonfiles, files, context, only)
        await asyncio.to_thread(durability.seal, checks.dirs_deepest_first(), root, as_root)
        return report
    finally:
        fds.close()


def _file_writer(context: WriteContext, workers: int | None, cache: BlockCache | None,
                 store_spec: StoreSpec | None) -> FileWriter:
    """Worker threads alone when no file-writer process is asked for or could reopen the store, else
    processes (with threads for what they cannot take)."""
    threads = ThreadFileWriter(context)
    if workers == 0 or store_spec is None:
        return threads
    return ProcessFileWriter(context, threads, workers, cache, store_spec)


async def _walk(reader: FlistReader, checks: TreeChecks, nonfiles: NonFileMaker, files: FileWriter,
                context: WriteContext, only: Callable[[str], bool] | None = None) -> Entry | None:
    """Every entry, in the flist's order, checked and handed to where it is made; then every file
    written and renamed. Returns the root entry (None when the flist lists none)."""
    root: Entry | None = None
    unmade: dict[str, tuple[Entry, list[str]]] = {}  # with ``only``: directories no chosen entry needed yet
    chosen: list[tuple[Entry, list[str]]] = []  # with ``only``: the files, written after the walk
    try:
        for entry in reader.entries():
            context.report.entries += 1
            if entry.path == "/":
                root = entry
                continue
            parts = split_path(entry.path)
            checks.check(entry, parts)
            if only is not None:
                if entry.kind is EntryKind.DIR:
                    checks.list_dir(entry)
                    unmade[entry.path] = (entry, parts)
                    continue
                if not only(entry.path):
                    if entry.kind is EntryKind.LINK:
                        checks.add_link(entry.path)  # not made, but nothing may go through it either
                    continue
                _make_parents(entry.parent, unmade, nonfiles)
            if entry.kind is EntryKind.FILE:
                checks.file_started(entry.path)
                if only is not None:
                    chosen.append((entry, parts))
                    continue
                await context.durability.rename_if_full()
                await files.add(entry, parts)
            else:
                nonfiles.create(entry, parts)
        if chosen:  # a partial run: its few missing blocks may all come in one go (``prefetch``)
            if isinstance(files, ThreadFileWriter):
                context.sync_in_writer = len(chosen) <= FSYNC_EACH_UP_TO
                if context.local is None:
                    await context.remote.prefetch([entry for entry, _parts in chosen])
            for entry, parts in chosen:
                await context.durability.rename_if_full()
                await files.add(entry, parts)
        await files.finish()
        await context.durability.rename_all()
    except BaseException:
        await files.stop()  # nothing may write while the destination is cleaned up
        await context.durability.settle()  # a thread may be renaming: let it finish first
        await context.remote.settle()
        raise
    return root


def _make_parents(parent: str, unmade: dict[str, tuple[Entry, list[str]]], nonfiles: NonFileMaker) -> None:
    """Make the directories of the flist on the way to a chosen entry in ``parent`` that are not made
    yet, outermost first (a partial tree has only the directories its entries lie in)."""
    chain = []
    while parent in unmade:
        chain.append(unmade.pop(parent))
        parent = chain[-1][0].parent
    for entry, parts in reversed(chain):
        nonfiles.create(entry, parts)


def _local_reader(store: BlockStore) -> LocalStore | None:
    """``store`` when it can read a block without the event loop: a ``dir://`` store, or a router
    whose every route is one (a flist materialized through its own recorded ``dir://`` routes)."""
    if isinstance(store, Router):
        return store if store.is_local() else None
    return store if isinstance(store, LocalStore) else None


def _prepare_dest(dest: Path) -> bool:
    """Check ``dest`` is absent (create it, return True) or an empty real directory (return False)."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        try:
            os.mkdir(dest, 0o700)
        except OSError as exc:
            raise FlistError(f"cannot create destination {dest}: {exc}") from exc
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise FlistError(f"destination {dest} exists and is not a directory (a symlink is not accepted)")
    if any(os.scandir(dest)):
        raise FlistError(f"destination {dest} is not empty: refusing to materialize over existing files")
    return False


def _remove_created(dest: Path, created_dest: bool) -> None:
    # directory modes are applied last, so a failure normally finds them all writable (0700); this
    # covers a failure during that last step
    def make_writable(_func: object, path: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    with contextlib.suppress(OSError):
        os.chmod(dest, 0o700)
    if created_dest:
        shutil.rmtree(dest, onerror=make_writable)
        return
    with contextlib.suppress(FileNotFoundError), os.scandir(dest) as children:
        for child in children:
            if child.is_dir(follow_symlinks=False):
                shutil.rmtree(child.path, onerror=make_writable)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(child.path)
