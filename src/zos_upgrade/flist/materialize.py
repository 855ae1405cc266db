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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import errno
import itertools
import logging
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from zos_upgrade.flist import FlistReader, open_flist
from zos_upgrade.flist.blocks import BlockCorrupt, decrypt_block
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError, HostileFlist
from zos_upgrade.flist.stores import BlockMissing, BlockStore, LocalStore, Router
from zos_upgrade.fsutil import TEMP_MARK

__all__ = ["FileBlockMissing", "MaterializeReport", "materialize"]

log = logging.getLogger(__name__)

Progress = Callable[[int], None]

_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileBlockMissing(BlockMissing):
    """A block a file needs is in no store: says which file, which block and which stores were tried."""

    def __init__(self, path: str, index: int, cause: BlockMissing) -> None:
        FlistError.__init__(self, f"{path}: block {index} ({cause.block_id.hex()}) is missing; "
                                  f"tried: {', '.join(cause.stores) or 'no store'}")
        self.block_id = cause.block_id
        self.stores = cause.stores
        self.path = path


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

# Fetched blocks are written to the cache by their own threads, off the path that writes the tree:
# at most this many blocks (stored bytes kept in memory until written) wait for a cache writer.
_CACHE_BACKLOG = 64
_CACHE_WRITERS = 2


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
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    report: MaterializeReport = field(default_factory=MaterializeReport)
    dirs: set[str] = field(default_factory=lambda: {"/"})
    links: set[str] = field(default_factory=set)
    finish: list[_DirFinish] = field(default_factory=list)
    inflight: dict[BlockRef, asyncio.Future[bytes]] = field(default_factory=dict)
    # files whose task started but which do not carry their final name yet (duplicate detection)
    unnamed: set[str] = field(default_factory=set)
    # files written and closed under a temporary name, waiting for the next flush and rename
    written: list[_Written] = field(default_factory=list)
    written_bytes: int = 0
    syncfs: Callable[[int], None] | None = field(default_factory=lambda: _SYNCFS)
    naming: asyncio.Task[None] | None = None  # the batch being flushed and renamed
    # verified blocks handed to a cache writer and not yet written: readers take them from here
    uncached: dict[bytes, bytes] = field(default_factory=dict)
    cache_writes: set[asyncio.Future[None]] = field(default_factory=set)
    cache_error: BaseException | None = None
    cache_pool: concurrent.futures.ThreadPoolExecutor | None = None
    # blocks being fetched by worker threads (the local-store path): a second thread waits for the first
    claims: dict[bytes, threading.Event] = field(default_factory=dict)
    claims_lock: threading.Lock = field(default_factory=threading.Lock)
    fds: _DirFds = field(init=False)

    def __post_init__(self) -> None:
        self.fds = _DirFds(self.dest)


async def materialize(
    flist: Path | FlistReader,
    dest: Path,
    *,
    store: BlockStore | None = None,
    cache: BlockCache | None = None,
    concurrency: int = 16,
    allow_devices: bool = False,
    progress: Progress | None = None,
) -> MaterializeReport:
    """Write the tree ``flist`` describes into ``dest`` (absent or empty); return what was done.

    ``store`` defaults to the routes recorded in the flist. With a ``cache``, blocks it holds are not
    fetched, and fetched blocks are added to it.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
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
        run = _Run(dest, store, cache, asyncio.Semaphore(concurrency), concurrency, allow_devices, progress)
        if cache is not None:
            run.cache_pool = concurrent.futures.ThreadPoolExecutor(_CACHE_WRITERS, "zos-block-cache")
        try:
            await _materialize(reader, run)
        finally:
            run.fds.close()
            if run.cache_pool is not None:
                run.cache_pool.shutdown(wait=True)  # _materialize waited for every write already
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
    root: Entry | None = None
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
                await file_slots.acquire()
                run.unnamed.add(entry.path)
                task = asyncio.create_task(_write_file(run, entry, parts))
                task.add_done_callback(lambda _t: file_slots.release())
                files.add(task)
                # surface a failed file now instead of after the whole walk
                for done in [t for t in files if t.done()]:
                    files.discard(done)
                    done.result()
                continue
            with run.fds.parent(parts) as pfd:
                _create_other(run, entry, parts[-1], pfd)
        if files:
            await asyncio.gather(*files)
        await _name_written(run)
        if run.naming is not None:
            await run.naming
        await _cache_drained(run, 0)
    except BaseException:
        for task in files:
            task.cancel()
        await asyncio.gather(*files, return_exceptions=True)
        if run.naming is not None:  # a thread may be renaming: let it finish before anyone cleans up
            await asyncio.gather(run.naming, return_exceptions=True)
        await asyncio.gather(*run.cache_writes, return_exceptions=True)
        raise
    await asyncio.to_thread(_finish_dirs, run, root)


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


@contextlib.contextmanager
def _parent_fd(dest: Path, parts: list[str]) -> Iterator[int]:
    """An fd of the parent directory of ``parts`` under ``dest``, reached without following any symlink."""
    base = os.open(dest, _DIR_OPEN)
    try:
        with _walk(base, parts[:-1], parts) as fd:
            yield fd
    finally:
        os.close(base)


@contextlib.contextmanager
def _walk(base: int, names: list[str], parts: list[str]) -> Iterator[int]:
    """Open ``names`` one below the other from the directory fd ``base`` with O_NOFOLLOW; yield the last."""
    fd = base
    try:
        for name in names:
            try:
                nxt = os.open(name, _DIR_OPEN, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise HostileFlist(
                        f"entry '/{'/'.join(parts)}': component {name!r} is not a real directory "
                        "(a symlink or a file): refusing to write through it"
                    ) from exc
                raise
            if fd != base:
                os.close(fd)
            fd = nxt
        yield fd
    finally:
        if fd != base:
            os.close(fd)


class _DirFds:
    """Open descriptors of directories this run created, so most entries are one ``openat`` away.

    Every cached fd was opened with O_NOFOLLOW right after its ``mkdir``; a directory deeper than
    the cache (it holds at most ``cap`` fds) is reached from its deepest cached ancestor by ``_walk``.
    """

    def __init__(self, dest: Path, cap: int = 256) -> None:
        self.cap = cap
        self.fds: dict[str, int] = {"/": os.open(dest, _DIR_OPEN)}

    def remember(self, path: str, parent_fd: int, name: str) -> None:
        if len(self.fds) < self.cap:
            self.fds[path] = os.open(name, _DIR_OPEN, dir_fd=parent_fd)

    def get(self, path: str) -> int | None:
        return self.fds.get(path)

    @contextlib.contextmanager
    def parent(self, parts: list[str]) -> Iterator[int]:
        """An fd of the parent directory of the entry ``parts``."""
        depth = len(parts) - 1
        while depth > 0 and ("/" + "/".join(parts[:depth])) not in self.fds:
            depth -= 1
        base = self.fds["/" + "/".join(parts[:depth]) if depth else "/"]
        with _walk(base, parts[depth:-1], parts) as fd:
            yield fd

    def close(self) -> None:
        fds, self.fds = list(self.fds.values()), {}
        for fd in fds:
            os.close(fd)


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


async def _plain_block(run: _Run, ref: BlockRef) -> bytes:
    """The plain bytes of one block; a block wanted again while in flight is loaded once."""
    async with run.limit:
        pending = run.inflight.get(ref)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        run.inflight[ref] = future
        try:
            plain = await _load_plain(run, ref)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark it retrieved: any waiter gets it through its own await
            raise
        finally:
            del run.inflight[ref]
        future.set_result(plain)
        return plain


async def _load_plain(run: _Run, ref: BlockRef) -> bytes:
    """Decrypt from the cache if it holds a good copy, else from the store (then cache the block).

    Each path is one hop to a worker thread (read + verify + decrypt, or verify + decrypt + cache):
    the hops, not the hashing, were what a profile of many small files showed.
    """
    if run.cache is not None:
        plain = await asyncio.to_thread(_from_cache, run.cache, run.uncached, ref)
        if plain is not None:
            run.report.blocks_from_cache += 1
            return plain
    stored = await run.store.get(ref.id)
    run.report.blocks_fetched += 1
    run.report.bytes_downloaded += len(stored)
    try:
        plain = await asyncio.to_thread(decrypt_block, ref, stored)
    except BlockCorrupt as exc:
        raise BlockCorrupt(f"from {run.store.url}: {exc}") from exc
    if run.cache is not None:
        await _cache_later(run, run.cache, ref.id, stored)
    return plain


async def _cache_later(run: _Run, cache: BlockCache, block_id: bytes, stored: bytes) -> None:
    """Hand verified ``stored`` bytes to a cache writer thread, waiting while the backlog is full.

    The block is readable from ``run.uncached`` until its file is in place, so a file that needs it
    meanwhile neither waits for the write nor fetches it again.
    """
    await _cache_drained(run, _CACHE_BACKLOG - 1)
    if block_id in run.uncached:
        return
    run.uncached[block_id] = stored
    job = asyncio.get_running_loop().run_in_executor(run.cache_pool, cache.put_verified, block_id, stored)
    run.cache_writes.add(job)

    def written(done: asyncio.Future[None]) -> None:
        run.cache_writes.discard(done)
        run.uncached.pop(block_id, None)
        if not done.cancelled() and done.exception() is not None and run.cache_error is None:
            run.cache_error = done.exception()

    job.add_done_callback(written)


async def _cache_drained(run: _Run, backlog: int) -> None:
    """Wait until at most ``backlog`` cache writes are pending; raise the first one that failed."""
    while len(run.cache_writes) > backlog:
        await asyncio.wait(set(run.cache_writes), return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0)  # let the done callbacks run
    if run.cache_error is not None:
        raise run.cache_error


def _from_cache(cache: BlockCache, pending: dict[bytes, bytes], ref: BlockRef) -> bytes | None:
    """The plain bytes of ``ref`` from a good cached copy, or None (absent, or corrupt: then dropped).

    ``decrypt_block`` checks the id and the key, so cached bytes are verified by decrypting them,
    not hashed a second time. ``pending`` holds blocks on their way into the cache (read from worker
    threads: a dict lookup is atomic); they are decrypted, so checked, like any cached copy.
    """
    cached = pending.get(ref.id)
    if cached is None:
        cached = cache.peek(ref.id)
    if cached is None:
        return None
    try:
        return decrypt_block(ref, cached)
    except BlockCorrupt:
        log.warning("cached block failed verification; fetching it again",
                    extra={"block": ref.id.hex(), "cache": str(cache.root)})
        cache.discard(ref.id)
        return None


async def _write_file(run: _Run, entry: Entry, parts: list[str]) -> None:
    """Write one file under a temporary name; ``_name_written`` flushes and renames it later.

    A worker thread creates the file and writes, in order, every leading block the cache holds; a
    file wholly in the cache (every file of a warm run) is sealed and closed in that same hop. The
    blocks from the first one the cache lacks on are fetched with a look-ahead window here.
    """
    tmp = f".{parts[-1][:200]}{TEMP_MARK}{secrets.token_hex(4)}"
    loop = asyncio.get_running_loop()
    start = await _to_thread_to_the_end(_write_cached_start, run, entry, parts, tmp, loop)
    run.report.blocks_from_cache += start.from_cache
    run.report.blocks_fetched += start.fetched
    run.report.bytes_downloaded += start.downloaded
    run.report.bytes_written += start.written
    if start.fd is not None:
        fd = start.fd
        try:
            written = await _write_blocks(run, entry, fd, start.blocks, start.written)
            _check_size(entry, written)
            await asyncio.to_thread(_seal_file, run, entry, fd)
        finally:
            os.close(fd)
    run.written.append(_Written(parts, tmp))
    run.written_bytes += entry.size
    run.report.files += 1


@dataclass(frozen=True)
class _Start:
    """What ``_write_cached_start`` did: the open fd (None once the file is complete and closed), how
    many leading blocks it wrote and their bytes, and how many of them came from the cache and how
    many (and how many stored bytes) from a local store."""

    fd: int | None
    blocks: int
    written: int
    from_cache: int = 0
    fetched: int = 0
    downloaded: int = 0


def _check_size(entry: Entry, written: int) -> None:
    if written != entry.size:
        raise HostileFlist(
            f"file {entry.path!r}: its blocks hold {written} bytes but the entry says {entry.size}"
        )


def _write_cached_start(run: _Run, entry: Entry, parts: list[str], tmp: str,
                        loop: asyncio.AbstractEventLoop) -> _Start:
    with run.fds.parent(parts) as pfd:
        # a name taken earlier in this run is caught by _check_parent, and again before the rename
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=pfd)
    try:
        index = written = from_cache = fetched = downloaded = 0
        local = _local_reader(run.store)
        if run.cache is not None:
            for ref in entry.blocks:
                try:
                    plain = _from_cache(run.cache, run.uncached, ref)
                except BlockCorrupt as exc:  # pragma: no cover - _from_cache drops a corrupt copy
                    raise BlockCorrupt(f"{entry.path}: block {index}: {exc}") from exc
                if plain is not None:
                    from_cache += 1
                elif local is not None:
                    plain, stored_bytes = _fetch_local(run, run.cache, local, entry, index, ref)
                    if stored_bytes is not None:
                        fetched += 1
                        downloaded += stored_bytes
                else:
                    break
                written += len(plain)
                _check_not_longer(entry, written)
                _write_all(fd, plain)
                index += 1
                if run.progress is not None:
                    loop.call_soon_threadsafe(run.progress, len(plain))
        if index < len(entry.blocks):
            return _Start(fd, index, written, from_cache, fetched, downloaded)
        _check_size(entry, written)
        _seal_file(run, entry, fd)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return _Start(None, index, written, from_cache, fetched, downloaded)


def _local_reader(store: BlockStore) -> LocalStore | None:
    """``store`` when it can read a block without the event loop: a ``dir://`` store, or a router
    whose every route is one (a flist materialized through its own recorded ``dir://`` routes)."""
    if isinstance(store, Router):
        return store if store.is_local() else None
    return store if isinstance(store, LocalStore) else None


def _fetch_local(run: _Run, cache: BlockCache, store: LocalStore, entry: Entry, index: int,
                 ref: BlockRef) -> tuple[bytes, int | None]:
    """Block ``index`` of ``entry`` from a local store, in a worker thread: read, verified and
    decrypted (``decrypt_block`` checks id and key), then cached. Returns its plain bytes and its
    stored size, or None for the size when another thread fetched it meanwhile (then it is counted
    neither as fetched nor as from the cache, as on the event-loop path)."""
    while True:
        with run.claims_lock:
            claim = run.claims.get(ref.id)
            mine = claim is None
            if claim is None:
                claim = run.claims[ref.id] = threading.Event()
        if not mine:
            claim.wait()
            continue
        try:
            # another thread may have cached it between our miss and our claim
            plain = _from_cache(cache, run.uncached, ref)
            if plain is not None:
                return plain, None
            try:
                stored = store.read_block(ref.id)
            except BlockMissing as exc:
                raise FileBlockMissing(entry.path, index, exc) from exc
            try:
                plain = decrypt_block(ref, stored)
            except BlockCorrupt as exc:
                raise BlockCorrupt(f"{entry.path}: block {index}: from {store.url}: {exc}") from exc
            cache.put_verified(ref.id, stored)
            return plain, len(stored)
        finally:
            with run.claims_lock:
                del run.claims[ref.id]
            claim.set()


async def _to_thread_to_the_end(fn: Callable[..., _Start], *args: object) -> _Start:
    """``asyncio.to_thread`` that, when cancelled, still waits for the thread (and closes the fd it
    returns) before re-raising: nobody may clean the destination up while a thread writes into it."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            started = await job
            if started.fd is not None:
                os.close(started.fd)
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
        run.syncfs(run.fds.fds["/"])  # every file of the batch is on disk before any is renamed
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


async def _file_block(run: _Run, entry: Entry, index: int, ref: BlockRef) -> bytes:
    """One block of ``entry``; its errors name the file and the block's position in it."""
    try:
        return await _plain_block(run, ref)
    except BlockMissing as exc:
        raise FileBlockMissing(entry.path, index, exc) from exc
    except BlockCorrupt as exc:
        raise BlockCorrupt(f"{entry.path}: block {index}: {exc}") from exc


async def _write_blocks(run: _Run, entry: Entry, fd: int, first: int, written: int) -> int:
    """Fetch the blocks of ``entry`` from index ``first`` on with a bounded look-ahead and write them in
    order after the ``written`` bytes already there; return the file's size so far."""
    window: list[asyncio.Task[bytes]] = []
    refs = itertools.islice(enumerate(entry.blocks), first, None)
    try:
        while True:
            while len(window) < run.window:
                nxt = next(refs, None)
                if nxt is None:
                    break
                window.append(asyncio.create_task(_file_block(run, entry, *nxt)))
            if not window:
                return written
            plain = await window.pop(0)
            written += len(plain)
            _check_not_longer(entry, written)
            await asyncio.to_thread(_write_all, fd, plain)
            run.report.bytes_written += len(plain)
            if run.progress is not None:
                run.progress(len(plain))
    finally:
        for task in window:
            task.cancel()
        if window:
            await asyncio.gather(*window, return_exceptions=True)


def _check_not_longer(entry: Entry, written: int) -> None:
    if written > entry.size:
        raise HostileFlist(
            f"file {entry.path!r}: its blocks hold more than the {entry.size} bytes the entry says"
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _seal_file(run: _Run, entry: Entry, fd: int) -> None:
    if run.as_root:
        os.fchown(fd, entry.uid, entry.gid)
    elif (entry.uid, entry.gid) != (os.geteuid(), os.getegid()):
        run.report.owners_skipped += 1
    os.fchmod(fd, entry.permissions)
    os.utime(fd, ns=(entry.mtime * 1_000_000_000,) * 2)


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
            fd = os.open(parts[-1], _DIR_OPEN, dir_fd=pfd)
            try:
                _seal_dir(fd, item.mode, item.mtime, each)
            finally:
                os.close(fd)
    top = run.fds.fds["/"]
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
