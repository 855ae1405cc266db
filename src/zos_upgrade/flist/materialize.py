"""flist -> directory tree, through the verified block cache (SPEC 4.3, 5).

Safety rules, in the order they are enforced:
- ``dest`` must be absent or empty; on any failure everything created under it is removed again.
- Every entry is created relative to an open descriptor of its parent directory, reached from ``dest``
  one component at a time with ``O_NOFOLLOW``: a symlink in the flist (``a -> /etc``) is never a way
  out (``a/passwd`` is refused as hostile), whatever the reader let through.
- A symlink is created as a symlink; its target is data and is never followed.
- Device nodes are skipped unless explicitly allowed; sockets are always skipped.
- A file's content comes only from blocks whose id and key match; its size must be what the entry says.
- Each file is written under a temporary name in its directory, flushed to disk, then renamed into
  place, so no file ever carries its final name with partial content. Files are flushed in batches
  with one ``syncfs`` (where the platform has it) instead of one ``fsync`` each: same guarantee, a
  fraction of the journal commits. A final ``syncfs`` makes the whole tree durable before we return.
- Directory modes and mtimes are applied last, deepest first, so writing their contents neither
  fails on a read-only directory nor bumps the mtime we restored.

Regular files are written by worker threads, or, for a big tree, by file-writer processes
(``writer_pool``, in jobs of several files): one process cannot use a second core. Either way the
walk, every check above, fetching from remote stores, the renames and the flushes stay here. A big
file written in one hop goes to disk with direct I/O (``directio``), so the flushes find little left
to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import stat
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.directio import DirectWriter
from zos_upgrade.flist.filewrite import (
    DIR_OPEN,
    FETCH_WINDOW,
    BlockSource,
    DirFds,
    FileBlockMissing,
    NotCached,
    NotFetched,
    Step,
    Tally,
    create_temp,
    write_blocks,
)
from zos_upgrade.flist.formats import open_flist
from zos_upgrade.flist.model import Entry, EntryKind, FlistError, HostileFlist
from zos_upgrade.flist.reader import FlistReader
from zos_upgrade.flist.stores import BlockStore, LocalStore, Router
from zos_upgrade.flist.writer_child import CACHE_ONLY, StoreSpec, describe_store
from zos_upgrade.flist.writer_pool import WriterPool
from zos_upgrade.fsutil import TEMP_MARK
from zos_upgrade.tasks import all_or_cancel

__all__ = ["FileBlockMissing", "MaterializeReport", "materialize"]

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass
class MaterializeReport:
    """What one materialize did. A block needed again while it is being fetched waits for that fetch
    and is counted neither as fetched nor as from the cache."""

    entries: int = 0
    files: int = 0
    dirs: int = 0
    links: int = 0
    specials: int = 0
    specials_skipped: int = 0
    bytes_written: int = 0
    blocks_fetched: int = 0
    blocks_from_cache: int = 0
    bytes_downloaded: int = 0
    owners_skipped: int = 0
    writer_processes: int = 0  # file-writer processes that took part (0: all written in this process)


@dataclass(frozen=True)
class _DirFinish:
    path: str
    mode: int
    uid: int
    gid: int
    mtime: int


@dataclass(frozen=True)
class _Written:
    parts: list[str]
    tmp: str


# A batch of written files is flushed and renamed when it reaches either bound: a bounded amount of
# dirty data per flush, and a bounded list in memory for million-entry flists.
_BATCH_FILES = 1024
_BATCH_BYTES = 256 * 1024 * 1024

# With ``workers=None`` file-writer processes are started once the walk has met this much file data
# or this many files: below that, starting them (~0.1 s and a core each) costs more than they win.
# Low on purpose: until the children are ready, threads write, at a higher CPU cost per byte
# (a 200 MB tree, measured: 16 MiB here cost the parent 0.3 s more CPU than 2 MiB).
_POOL_AFTER_BYTES = 4 * 1024 * 1024
_POOL_AFTER_FILES = 100

# Files go to a file-writer process in jobs of up to this many files or bytes (a bigger file is a
# job alone): one message, one answer and one task per job instead of per file (the parent used a
# third of a core on that with one file per job); small enough that the last jobs spread evenly.
_JOB_FILES = 32
_JOB_BYTES = 1024 * 1024


def _load_syncfs() -> Callable[[int], None] | None:
    """Linux ``syncfs(2)`` through libc, or None where it does not exist (then each file is fsynced)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int

    def syncfs(fd: int) -> None:
        if fn(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}")

    return syncfs


_SYNCFS = _load_syncfs()


@dataclass
class _Run:
    """State of one materialize call, shared by its tasks (all on one event loop)."""

    dest: Path
    store: BlockStore
    cache: BlockCache | None
    limit: asyncio.Semaphore
    window: int
    allow_devices: bool
    progress: Progress | None
    workers: int  # file-writer processes to start (0: none)
    # asked for by number: started with the first file, and files wait for a child instead of going
    # to threads; else started after _POOL_AFTER_BYTES or _POOL_AFTER_FILES
    wait_for_pool: bool
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    report: MaterializeReport = field(default_factory=MaterializeReport)
    dirs: set[str] = field(default_factory=lambda: {"/"})
    links: set[str] = field(default_factory=set)
    finish: list[_DirFinish] = field(default_factory=list)
    # blocks being fetched from a remote store, by id, and every such fetch (to wait for on failure)
    inflight: dict[bytes, _Shared] = field(default_factory=dict)
    fetches: set[asyncio.Future[bytes]] = field(default_factory=set)
    # files whose task started but which do not carry their final name yet (duplicate detection)
    unnamed: set[str] = field(default_factory=set)
    # files written and closed under a temporary name, waiting for the next flush and rename
    written: list[_Written] = field(default_factory=list)
    written_bytes: int = 0
    syncfs: Callable[[int], None] | None = field(default_factory=lambda: _SYNCFS)
    naming: asyncio.Task[None] | None = None  # the batch being flushed and renamed
    token: str = field(default_factory=lambda: secrets.token_hex(4))  # in every temporary name
    direct: threading.local = field(default_factory=threading.local)  # each worker thread's DirectWriter
    temps: int = 0  # temporary names given so far
    pool: WriterPool | None = None
    seen: tuple[int, int] = (0, 0)  # (bytes, files) of regular files walked so far
    source: BlockSource = field(init=False)
    fds: DirFds = field(init=False)
    # the store itself when it reads blocks without the event loop (decided once, not per file)
    local: LocalStore | None = field(init=False)
    store_spec: StoreSpec | None = field(init=False)  # how a file-writer process reopens the store

    def __post_init__(self) -> None:
        self.local = _local_reader(self.store)  # first: opening a router's stores may fail
        # a child reopens a dir:// store; with a remote one it writes from the cache, which we fill
        if self.local is not None:
            self.store_spec = describe_store(self.store)
        else:
            self.store_spec = CACHE_ONLY if self.cache is not None else None
        self.source = BlockSource(self.cache)
        self.fds = DirFds(os.open(self.dest, DIR_OPEN))


def _auto_workers() -> int:
    """One file-writer process per usable core, none on a single core (it would only add a process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 8) if cores > 1 else 0


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
) -> MaterializeReport:
    """Write the tree ``flist`` describes into ``dest`` (absent or empty); return what was done.

    ``store`` defaults to the routes recorded in the flist. With a ``cache``, blocks it holds are not
    fetched, and fetched blocks are added to it. ``workers`` file-writer processes write the regular
    files when the store is ``dir://`` or there is a cache (they read blocks from the cache, which
    this process fills from a remote store): by default one per core once the tree proves big
    enough to repay starting them; ``0`` writes everything in this process; ``N`` starts N at once.
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
        run = _Run(dest, store, cache, asyncio.Semaphore(concurrency), concurrency, allow_devices, progress,
                   _auto_workers() if workers is None else workers, workers is not None)
        try:
            await _materialize(reader, run)
        finally:
            run.fds.close()
    except BaseException:
        _remove_created(dest, created_dest)
        raise
    finally:
        if own_store and store is not None:
            await store.aclose()
        if own_reader:
            reader.close()
    log.info("flist materialized", extra={"dest": str(dest), **run.report.__dict__})
    return run.report


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


async def _materialize(reader: FlistReader, run: _Run) -> None:
    files: set[asyncio.Task[None]] = set()
    file_slots = asyncio.Semaphore(run.window)
    job: list[tuple[Entry, list[str]]] = []  # files for the next job of the writer pool
    job_bytes = 0
    root: Entry | None = None

    async def start(write: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        await file_slots.acquire()
        task = asyncio.create_task(write(run, *args))
        task.add_done_callback(lambda _t: file_slots.release())
        files.add(task)
        # surface a failed file now instead of after the whole walk
        for done in [t for t in files if t.done()]:
            files.discard(done)
            done.result()

    try:
        for entry in reader.entries():
            run.report.entries += 1
            if entry.path == "/":
                root = entry
                continue
            parts = _split(entry.path)
            _check_parent(run, entry, parts)
            if entry.kind is EntryKind.FILE:
                if len(run.written) >= _BATCH_FILES or run.written_bytes >= _BATCH_BYTES:
                    await _name_written(run)
                run.unnamed.add(entry.path)
                pool = await _pool_for(run, entry)
                if pool is None:
                    await start(_write_file, entry, parts, _temp_name(run, parts))
                    continue
                job.append((entry, parts))
                job_bytes += entry.size
                if len(job) >= _JOB_FILES or job_bytes >= _JOB_BYTES:
                    await start(_write_in_pool, pool, job)
                    job, job_bytes = [], 0
                continue
            with run.fds.parent(parts) as pfd:
                _create_other(run, entry, parts[-1], pfd)
        if job and run.pool is not None:
            await start(_write_in_pool, run.pool, job)
        if files:
            await asyncio.gather(*files)
        if run.pool is not None:
            await run.pool.close()
        await _name_written(run)
        if run.naming is not None:
            await run.naming
    except BaseException:
        for task in files:  # first, so no file falls back to a thread once its child is gone
            task.cancel()
        if run.pool is not None:  # no child may write while the destination is cleaned up
            await run.pool.kill()
        await asyncio.gather(*files, return_exceptions=True)
        if run.naming is not None:  # a thread may be renaming: let it finish before anyone cleans up
            await asyncio.gather(run.naming, return_exceptions=True)
        await asyncio.gather(*run.fetches, return_exceptions=True)
        raise
    await asyncio.to_thread(_finish_dirs, run, root)


async def _pool_for(run: _Run, entry: Entry) -> WriterPool | None:
    """The writer pool when ``entry`` should go to it (starting the pool once the walk has seen
    enough), or None to write it in this process: no pool, or (automatic) no child ready yet."""
    seen_bytes, seen_files = run.seen = (run.seen[0] + entry.size, run.seen[1] + 1)
    if run.pool is None:
        too_early = seen_bytes < _POOL_AFTER_BYTES and seen_files < _POOL_AFTER_FILES
        if not run.workers or run.store_spec is None or (too_early and not run.wait_for_pool):
            return None
        run.pool = WriterPool(run.workers, run.fds.root, run.cache, run.store_spec, run.as_root)
        await run.pool.start()
    if run.pool.failed or (not run.pool.ready and not run.wait_for_pool):
        return None  # no child left, or automatic and still starting: threads write meanwhile
    return run.pool


def _temp_name(run: _Run, parts: list[str]) -> str:
    """A name no entry can take by design: unpredictable for the run, unique within it."""
    run.temps += 1
    return f".{parts[-1][:200]}{TEMP_MARK}{run.token}{run.temps:x}"


def _closed(run: _Run, entry: Entry, parts: list[str], tmp: str) -> None:
    """``entry`` is written, sealed and closed as ``tmp``: it waits for the next flush and rename."""
    run.written.append(_Written(parts, tmp))
    run.written_bytes += entry.size
    run.report.files += 1


async def _write_in_pool(run: _Run, pool: WriterPool, files: list[tuple[Entry, list[str]]]) -> None:
    """Have a file-writer process write ``files`` as one job; ``_name_written`` flushes and renames
    them later.

    With a remote store, the blocks the cache lacks are fetched and cached (their ids checked) here
    first, and the child writes from the cache alone. A file the child then misses a block for (the
    cached copy went bad and was dropped), or every file when no child is left, is written by a
    worker thread instead.
    """
    if run.local is None:
        settled = await all_or_cancel(_cache_missing(run, entry) for entry, _parts in files)
    else:
        settled = [0] * len(files)
    named = [(entry, parts, _temp_name(run, parts)) for entry, parts in files]
    if not await pool.room():
        await all_or_cancel(_write_file(run, entry, parts, tmp) for entry, parts, tmp in named)
        return
    run.report.writer_processes = max(run.report.writer_processes, pool.running)
    outcomes = await asyncio.gather(*pool.submit([(entry, tmp) for entry, _parts, tmp in named]),
                                    return_exceptions=True)
    for outcome in outcomes:  # a failure fails the run; only a file missing from the cache is retried
        if isinstance(outcome, BaseException) and not isinstance(outcome, NotCached):
            raise outcome
    again = []
    for (entry, parts, tmp), fetched, outcome in zip(named, settled, outcomes, strict=True):
        if isinstance(outcome, NotCached):
            log.warning("a block the file writer process needed is not in the cache; writing the file here",
                        extra={"entry": entry.path, "block_index": outcome.index})
            again.append(_write_file(run, entry, parts, _temp_name(run, parts)))
        elif not isinstance(outcome, BaseException):
            # the blocks fetched (or waited for) above were counted then, not again as read from the cache
            _count(run, replace(outcome, from_cache=outcome.from_cache - fetched))
            if run.progress is not None:
                run.progress(outcome.added)
            _closed(run, entry, parts, tmp)
    await all_or_cancel(again)


async def _cache_missing(run: _Run, entry: Entry) -> int:
    """Fetch the blocks of ``entry`` the cache lacks into it, a window at a time; count them as
    fetched (a block another file cached meanwhile counts as neither). Returns how many there were."""
    first_of = {}
    for index, ref in enumerate(entry.blocks):
        if ref.id not in first_of and run.source.lacks(ref):
            first_of[ref.id] = index
    missing = list(first_of.values())
    for start in range(0, len(missing), FETCH_WINDOW):
        indices = missing[start:start + FETCH_WINDOW]
        async with _fetched(run, [entry.blocks[i].id for i in indices]) as window:
            tally = await asyncio.to_thread(_cache_window, run, entry, indices, window)
        _count(run, tally)
    return len(missing)


def _cache_window(run: _Run, entry: Entry, indices: list[int], window: _Fetched) -> Tally:
    fetched = downloaded = 0
    for index in indices:
        size = run.source.cache_stored(window, entry, index)
        if size is not None:
            fetched += 1
            downloaded += size
    return Tally(fetched=fetched, downloaded=downloaded)


def _split(path: str) -> list[str]:
    """The components of an absolute flist path, refusing anything that could leave the destination."""
    if not path.startswith("/") or "\0" in path:
        raise HostileFlist(f"entry path {path!r}: expected an absolute path without NUL bytes")
    parts = path[1:].split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise HostileFlist(f"entry path {path!r}: empty, '.' or '..' component")
    return parts


def _check_parent(run: _Run, entry: Entry, parts: list[str]) -> None:
    for depth in range(1, len(parts)):
        prefix = "/" + "/".join(parts[:depth])
        if prefix in run.links:
            raise HostileFlist(
                f"entry {entry.path!r} goes through symlink {prefix!r}: refusing to write through a link"
            )
    parent = entry.parent
    if parent not in run.dirs:
        raise HostileFlist(f"entry {entry.path!r}: its parent {parent!r} is not a directory listed before it")
    if entry.path in run.dirs or entry.path in run.links or entry.path in run.unnamed:
        raise HostileFlist(f"entry {entry.path!r} appears twice")


def _exists(name: str, pfd: int) -> bool:
    try:
        os.lstat(name, dir_fd=pfd)
    except FileNotFoundError:
        return False
    return True


def _apply_owner(run: _Run, entry: Entry, name: str, pfd: int) -> None:
    if run.as_root:
        os.chown(name, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
    elif (entry.uid, entry.gid) != (os.geteuid(), os.getegid()):
        run.report.owners_skipped += 1


def _create_other(run: _Run, entry: Entry, name: str, pfd: int) -> None:
    """Directories, symlinks and special files (regular files go through ``_write_file``)."""
    try:
        _create_node(run, entry, name, pfd)
    except FileExistsError as exc:
        raise HostileFlist(f"entry {entry.path!r} appears twice") from exc


def _create_node(run: _Run, entry: Entry, name: str, pfd: int) -> None:
    mtime_ns = (entry.mtime * 1_000_000_000,) * 2
    if entry.kind is EntryKind.DIR:
        os.mkdir(name, 0o700, dir_fd=pfd)
        _apply_owner(run, entry, name, pfd)
        run.fds.remember(entry.path, pfd, name)
        run.dirs.add(entry.path)
        run.finish.append(_DirFinish(entry.path, entry.permissions, entry.uid, entry.gid, entry.mtime))
        run.report.dirs += 1
    elif entry.kind is EntryKind.LINK:
        if not entry.target or "\0" in entry.target:
            raise HostileFlist(f"symlink {entry.path!r}: empty target or NUL byte in target")
        os.symlink(entry.target, name, dir_fd=pfd)
        _apply_owner(run, entry, name, pfd)
        os.utime(name, ns=mtime_ns, dir_fd=pfd, follow_symlinks=False)
        run.links.add(entry.path)
        run.report.links += 1
    elif entry.kind is EntryKind.SPECIAL:
        fmt = stat.S_IFMT(entry.mode)
        device = fmt in (stat.S_IFBLK, stat.S_IFCHR)
        if fmt == stat.S_IFSOCK or (device and not run.allow_devices) or fmt not in (
            stat.S_IFBLK, stat.S_IFCHR, stat.S_IFIFO
        ):
            log.info("special file skipped", extra={"entry": entry.path, "mode": oct(entry.mode)})
            run.report.specials_skipped += 1
            return
        os.mknod(name, fmt | entry.permissions, entry.rdev, dir_fd=pfd)
        _apply_owner(run, entry, name, pfd)
        os.chmod(name, entry.permissions, dir_fd=pfd)  # undo the umask; we just made it, not a link
        os.utime(name, ns=mtime_ns, dir_fd=pfd, follow_symlinks=False)
        run.report.specials += 1
    else:  # pragma: no cover - EntryKind is closed
        raise HostileFlist(f"entry {entry.path!r}: unknown kind {entry.kind!r}")


@dataclass
class _Fetched:
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


async def _write_file(run: _Run, entry: Entry, parts: list[str], tmp: str) -> None:
    """Write one file under a temporary name; ``_name_written`` flushes and renames it later.

    A worker thread creates the file and writes its blocks in order: from the cache, else from a
    local store. A file wholly in the cache or in a ``dir://`` store (every file of a warm run) is
    written, sealed and closed in that one hop. With a remote store, the thread stops at the first
    block it lacks and names the blocks of the next window the cache lacks; those are fetched on the
    event loop (a block several files want is fetched once) and the next hop writes them, and so on.
    """
    loop = asyncio.get_running_loop()
    on_bytes = None if run.progress is None else _threadsafe(loop, run.progress)
    step = await _in_thread(_create_and_write, run, entry, parts, tmp, on_bytes, owns_fd=True)
    try:
        _count(run, step.tally)
        while not step.done:
            async with _fetched(run, [entry.blocks[i].id for i in step.missing]) as window:
                step = await _in_thread(write_blocks, run.source, entry, step.fd, step.blocks, step.written,
                                        window, run.as_root, on_bytes, owns_fd=False)
            _count(run, step.tally)
    finally:
        os.close(step.fd)
    _closed(run, entry, parts, tmp)


def _threadsafe(loop: asyncio.AbstractEventLoop, progress: Progress) -> Progress:
    """``progress`` called from a worker thread, run on the event loop's thread."""
    def report(count: int) -> None:
        loop.call_soon_threadsafe(progress, count)
    return report


def _count(run: _Run, tally: Tally) -> None:
    run.report.blocks_from_cache += tally.from_cache
    run.report.blocks_fetched += tally.fetched
    run.report.bytes_downloaded += tally.downloaded
    run.report.bytes_written += tally.added
    run.report.owners_skipped += tally.owner_skipped


@contextlib.asynccontextmanager
async def _fetched(run: _Run, block_ids: list[bytes]) -> AsyncIterator[_Fetched]:
    """The stored bytes (or the error) of each of ``block_ids`` from ``run.store``, held until the
    caller's hop has verified and cached them. A block another file is fetching, or has fetched and
    not cached yet, is not fetched again: both use the one request."""
    wanted = list(dict.fromkeys(block_ids))
    for block_id in wanted:
        shared = run.inflight.get(block_id)
        if shared is None:
            task = asyncio.ensure_future(_fetch_stored(run, block_id))
            run.fetches.add(task)
            task.add_done_callback(run.fetches.discard)
            shared = run.inflight[block_id] = _Shared(task)
        shared.users += 1
    try:
        await asyncio.wait([run.inflight[b].task for b in wanted])
        got: dict[bytes, bytes | BaseException] = {}
        for block_id in wanted:
            fetch = run.inflight[block_id].task
            error = fetch.exception()
            got[block_id] = error if error is not None else fetch.result()
        yield _Fetched(run.store.url, got)
    finally:
        for block_id in wanted:
            shared = run.inflight[block_id]
            shared.users -= 1
            if shared.users == 0:
                del run.inflight[block_id]
                if not shared.task.done():
                    shared.task.cancel()
                elif not shared.task.cancelled():
                    shared.task.exception()  # retrieved: its users got it above


@dataclass
class _Shared:
    """One block fetch and how many files' windows wait for it."""

    task: asyncio.Future[bytes]
    users: int = 0


async def _fetch_stored(run: _Run, block_id: bytes) -> bytes:
    async with run.limit:
        return await run.store.get(block_id)


def _create_and_write(run: _Run, entry: Entry, parts: list[str], tmp: str,
                      on_bytes: Progress | None) -> Step:
    """Create the file under its temporary name and write what the cache and the local store hold."""
    fd = create_temp(run.fds, parts, tmp)
    try:
        # direct I/O only where the file is written in this one hop: from a local store
        direct = _thread_direct_writer(run) if run.local is not None else None
        return write_blocks(run.source, entry, fd, 0, 0, run.local, run.as_root, on_bytes, direct)
    except BaseException:
        os.close(fd)
        raise


def _thread_direct_writer(run: _Run) -> DirectWriter:
    """The calling worker thread's direct-I/O buffer for this run."""
    writer: DirectWriter | None = getattr(run.direct, "writer", None)
    if writer is None:
        writer = run.direct.writer = DirectWriter()
    return writer


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


async def _name_written(run: _Run) -> None:
    """Start flushing the files written so far and giving them their final names, in a thread.

    The flush overlaps with fetching and writing the next files; one batch is in flight at a time.
    """
    if run.naming is not None:
        await run.naming
        run.naming = None
    batch, run.written, run.written_bytes = run.written, [], 0
    if batch:
        run.naming = asyncio.create_task(asyncio.to_thread(_flush_and_rename, run, batch))


def _flush_and_rename(run: _Run, batch: list[_Written]) -> None:
    if run.syncfs is not None:
        run.syncfs(run.fds.root)  # every file of the batch is on disk before any is renamed
    for item in batch:
        name = item.parts[-1]
        with run.fds.parent(item.parts) as pfd:
            if run.syncfs is None:
                fd = os.open(item.tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if _exists(name, pfd):
                raise HostileFlist(f"entry '/{'/'.join(item.parts)}' appears twice")
            os.rename(item.tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        run.unnamed.discard("/" + "/".join(item.parts))


def _local_reader(store: BlockStore) -> LocalStore | None:
    """``store`` when it can read a block without the event loop: a ``dir://`` store, or a router
    whose every route is one (a flist materialized through its own recorded ``dir://`` routes)."""
    if isinstance(store, Router):
        return store if store.is_local() else None
    return store if isinstance(store, LocalStore) else None


def _finish_dirs(run: _Run, root: Entry | None) -> None:
    """Modes, owners and mtimes of directories, deepest first, then of ``dest`` itself from the root;
    then make the whole tree durable (one ``syncfs``, or an fsync of every directory without it)."""
    each = run.syncfs is None
    for item in sorted(run.finish, key=lambda d: d.path.count("/"), reverse=True):
        cached = run.fds.get(item.path)
        if cached is not None:
            _seal_dir(cached, item.mode, item.mtime, each)
            continue
        parts = _split(item.path)
        with run.fds.parent(parts) as pfd:
            fd = os.open(parts[-1], DIR_OPEN, dir_fd=pfd)
            try:
                _seal_dir(fd, item.mode, item.mtime, each)
            finally:
                os.close(fd)
    top = run.fds.root
    if root is not None:
        if run.as_root:
            os.fchown(top, root.uid, root.gid)
        _seal_dir(top, root.permissions, root.mtime, False)
    if run.syncfs is not None:
        run.syncfs(top)
    else:
        os.fsync(top)


def _seal_dir(fd: int, mode: int, mtime: int, fsync: bool) -> None:
    os.fchmod(fd, mode)
    os.utime(fd, ns=(mtime * 1_000_000_000,) * 2)
    if fsync:
        os.fsync(fd)
