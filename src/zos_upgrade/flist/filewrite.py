"""One regular file of a flist, written under a temporary name inside the destination from verified
blocks: what materialize's worker threads and its file-writer processes both do.

The directory holding the file is reached from the destination one component at a time with
``O_NOFOLLOW`` (a symlink is never a way out); every block comes from the cache or a local store and
is trusted only after ``decrypt_block`` checked its id (its key check is redundant then and skipped:
see ``blocks``); the file ends up exactly the size its entry says, with its mode, owner (as root)
and mtime, and is closed by the caller, never renamed here.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from zos_upgrade.flist.blocks import BlockCorrupt, decrypt_block
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.directio import DIRECT_MIN_SIZE, DirectWriter
from zos_upgrade.flist.model import BlockRef, Entry, FlistError, HostileFlist
from zos_upgrade.flist.stores import BlockMissing, LocalStore
from zos_upgrade.fsutil import write_all

__all__ = [
    "DIR_OPEN",
    "BlockSource",
    "DirFds",
    "FileBlockMissing",
    "Hasher",
    "LocalBlocks",
    "NotCached",
    "NotFetched",
    "Step",
    "Tally",
    "WrittenFile",
    "content_hasher",
    "create_temp",
    "walk",
    "write_blocks",
]

log = logging.getLogger(__name__)

DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# A file whose blocks come from a remote store is written in windows of this many blocks: the
# caller fetches them together, then writes them in one hop.
FETCH_WINDOW = 8


class FileBlockMissing(BlockMissing):
    """A block a file needs is in no store: says which file, which block and which stores were tried."""

    def __init__(self, path: str, index: int, cause: BlockMissing) -> None:
        FlistError.__init__(self, f"{path}: block {index} ({cause.block_id.hex()}) is missing; "
                                  f"tried: {', '.join(cause.stores) or 'no store'}")
        self.block_id = cause.block_id
        self.stores = cause.stores
        self.path = path
        self.index = index


class NotFetched(Exception):
    """A block is in neither the cache nor the store at hand: write up to here, fetch more."""


class NotCached(FlistError):
    """A file-writer process working from the cache alone (its parent fetches from a remote store)
    found a block missing there, or failing verification there (then dropped): the parent writes
    that file itself."""

    def __init__(self, path: str, index: int) -> None:
        super().__init__(f"{path}: block {index} is not (or no longer) good in the block cache")
        self.path = path
        self.index = index


@contextlib.contextmanager
def walk(base: int, names: list[str], parts: list[str]) -> Iterator[int]:
    """Open ``names`` one below the other from the directory fd ``base`` with O_NOFOLLOW; yield the last."""
    fd = base
    try:
        for name in names:
            try:
                nxt = os.open(name, DIR_OPEN, dir_fd=fd)
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


class DirFds:
    """Open descriptors of directories under the destination, so most entries are one ``openat`` away.

    ``root`` is an fd of the destination (owned from now on). Every other cached fd was opened with
    O_NOFOLLOW from a cached parent; a directory deeper than the cache (it holds at most ``cap`` fds)
    is reached from its deepest cached ancestor by ``walk``.
    """

    def __init__(self, root: int, cap: int = 256, *, learn: bool = False) -> None:
        self.cap = cap
        self.learn = learn  # also cache the directories ``parent`` walks to (for a process that did not
        self.fds: dict[str, int] = {"/": root}  # create them, so could not ``remember`` them)

    @property
    def root(self) -> int:
        return self.fds["/"]

    def remember(self, path: str, parent_fd: int, name: str) -> None:
        if len(self.fds) < self.cap:
            self.fds[path] = os.open(name, DIR_OPEN, dir_fd=parent_fd)

    def get(self, path: str) -> int | None:
        return self.fds.get(path)

    @contextlib.contextmanager
    def parent(self, parts: list[str]) -> Iterator[int]:
        """An fd of the parent directory of the entry ``parts``."""
        depth = len(parts) - 1
        while depth > 0 and ("/" + "/".join(parts[:depth])) not in self.fds:
            depth -= 1
        base = self.fds["/" + "/".join(parts[:depth]) if depth else "/"]
        with walk(base, parts[depth:-1], parts) as fd:
            if self.learn and fd != base and len(self.fds) < self.cap:
                self.fds["/" + "/".join(parts[:-1])] = os.dup(fd)
            yield fd

    def close(self) -> None:
        fds, self.fds = list(self.fds.values()), {}
        for fd in fds:
            os.close(fd)


class LocalBlocks(Protocol):
    """Plain blocks already on this machine outside the cache (``node_blocks.NodeBlocks``): ``plain``
    returns verified bytes or None, and forgets a block that failed (``has`` is False after)."""

    def has(self, ref: BlockRef) -> bool: ...

    def plain(self, ref: BlockRef) -> bytes | None: ...


class BlockSource:
    """The plain bytes of blocks, verified: from the cache, else from a local store (then cached).

    Threads wanting the same uncached block take turns (a claim per id), so it is read once.
    """

    def __init__(self, cache: BlockCache | None, local: LocalBlocks | None = None, *,
                 keep_fetched: bool = True) -> None:
        self.cache = cache
        self.local = local  # verified plain blocks tried before the cache (the node's own files)
        # False: blocks read from a store go straight into their file and are not added to the
        # cache (a first install with nothing to share); the cache is still read
        self.keep_fetched = keep_fetched
        self._claims: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()

    def cached(self, ref: BlockRef) -> bytes | None:
        """The plain bytes of ``ref`` from a good cached copy, or None (no cache, absent, or corrupt:
        then dropped). ``decrypt_block`` checks the id, so cached bytes are verified by decrypting
        them, not hashed a second time."""
        if self.local is not None:
            plain = self.local.plain(ref)
            if plain is not None:
                return plain
        if self.cache is None:
            return None
        stored = self.cache.peek(ref.id)
        if stored is None:
            return None
        try:
            return decrypt_block(ref, stored, check_key=False)
        except BlockCorrupt:
            log.warning("cached block failed verification; fetching it again",
                        extra={"block": ref.id.hex(), "cache": str(self.cache.root)})
            self.cache.discard(ref.id)
            return None

    def lacks(self, ref: BlockRef) -> bool:
        if self.local is not None and self.local.has(ref):
            return False  # a drifted local block is dropped by ``plain``: then it is lacking again
        return self.lacks_id(ref.id)

    def lacks_id(self, block_id: bytes) -> bool:
        return self.cache is None or not self.cache.has(block_id)

    def read(self, store: LocalStore | None, entry: Entry, index: int) -> tuple[bytes, int | None]:
        """Block ``index`` of ``entry`` from ``store``: read, verified, decrypted, then cached. Returns
        its plain bytes and its stored size, or None for the size when another thread cached it
        meanwhile (then it is counted neither as fetched nor as from the cache)."""
        ref = entry.blocks[index]
        if store is None:
            raise NotFetched(ref.id.hex())
        with self._claim(ref.id):
            # another thread may have cached it between our miss and our claim
            plain = self.cached(ref)
            if plain is not None:
                return plain, None
            stored, source = self._read_stored(store, entry, index)
            try:
                plain = decrypt_block(ref, stored, check_key=False)
            except BlockCorrupt as exc:
                raise BlockCorrupt(f"{entry.path}: block {index}: from {store.url}: {exc}") from exc
            if self.cache is not None and self.keep_fetched:
                self.cache.adopt_verified(ref.id, stored, source)
            return plain, len(stored)

    def cache_stored(self, store: LocalStore, entry: Entry, index: int) -> int | None:
        """Put block ``index`` of ``entry`` from ``store`` into the cache, its id checked (a file-writer
        process decrypts it from there). Returns its stored size, or None when another thread cached
        it meanwhile."""
        ref = entry.blocks[index]
        if self.cache is None:
            raise ValueError("cache_stored needs a cache")
        with self._claim(ref.id):
            if self.cache.has(ref.id):
                return None
            stored, _source = self._read_stored(store, entry, index)
            try:
                self.cache.put(ref.id, stored)  # checks the id first
            except BlockCorrupt as exc:
                raise BlockCorrupt(f"{entry.path}: block {index}: from {store.url}: {exc}") from exc
            return len(stored)

    @staticmethod
    def _read_stored(store: LocalStore, entry: Entry, index: int) -> tuple[bytes, str | None]:
        """The stored bytes, and the file they were read from when the store has one."""
        try:
            return store.read_block_file(entry.blocks[index].id)
        except BlockMissing as exc:
            raise FileBlockMissing(entry.path, index, exc) from exc

    @contextlib.contextmanager
    def _claim(self, block_id: bytes) -> Iterator[None]:
        """Hold the one claim on ``block_id`` (waiting for whoever holds it first)."""
        while True:
            with self._lock:
                claim = self._claims.get(block_id)
                if claim is None:
                    claim = self._claims[block_id] = threading.Event()
                    break
            claim.wait()
        try:
            yield
        finally:
            with self._lock:
                del self._claims[block_id]
            claim.set()


class Hasher(Protocol):
    """A running content digest (``content_hasher``)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class WrittenFile(NamedTuple):
    """What a writer knows of a regular file it wrote: the blake2b-256 (hex) of the bytes it wrote
    (the digest the upgrader's manifest records), and the inode and mtime it left the file with,
    sealed. While a later ``lstat`` shows that inode and mtime, no write has touched the file since:
    a write stamps the present as mtime, and the sealed one is the flist's, in the past."""

    digest: str
    ino: int
    mtime_ns: int

    def text(self) -> str:
        """The one string a writer process hands back (``parse`` reads it)."""
        return f"{self.digest}/{self.ino}/{self.mtime_ns}"

    @classmethod
    def parse(cls, text: str) -> WrittenFile:
        digest, ino, mtime_ns = text.split("/")
        return cls(digest, int(ino), int(mtime_ns))


@dataclass(frozen=True)
class Tally:
    """What writing (part of) one file counted; ``digest``: the complete file's ``WrittenFile`` as
    text when a digest was asked for, else ""."""

    added: int = 0
    from_cache: int = 0
    fetched: int = 0
    downloaded: int = 0
    owner_skipped: bool = False
    digest: str = ""


def content_hasher() -> Hasher:
    """The hash a file's plain content is digested with as it is written: blake2b-256, the digest
    the upgrader's manifest records for a file (a caller needs no second read of the tree)."""
    return hashlib.blake2b(digest_size=32)


@dataclass(frozen=True)
class Step:
    """What one hop did to a file: whether it is complete (written, sized and sealed; ``fd`` stays
    open for the caller to close), the index of the next block to write and the bytes written so far,
    which blocks of the next window the cache lacks, and what the hop counted."""

    fd: int
    done: bool
    blocks: int
    written: int
    missing: list[int]
    tally: Tally
    hasher: Hasher | None = None  # the content digest so far, for the next hop to go on with


def create_temp(fds: DirFds, parts: list[str], tmp: str) -> int:
    """Create the file ``tmp`` (empty, 0600) in the parent directory of ``parts``; return its fd."""
    with fds.parent(parts) as pfd:
        # a name taken earlier in this run is caught before, and again before the rename
        return os.open(tmp, _FILE_CREATE, 0o600, dir_fd=pfd)


def write_blocks(source: BlockSource, entry: Entry, fd: int, first: int, written: int,
                 store: LocalStore | None, as_root: bool,
                 on_bytes: Callable[[int], None] | None = None, direct: DirectWriter | None = None,
                 hasher: Hasher | None = None) -> Step:
    """Write the blocks of ``entry`` from index ``first`` on, each from the cache or else ``store``,
    until one is in neither (then name the next window's blocks the cache lacks) or the file is
    complete (then check its size and seal it). Never closes ``fd``.

    With ``hasher`` (``content_hasher``, holding the blocks before ``first``) every block written
    goes through it in order: the complete file's tally carries its digest.

    With ``direct``, a big file is written with direct I/O; the caller then writes it in this one
    hop or not at all: a hop that stops early leaves the file short (its end still buffered)."""
    index, start, from_cache, fetched, downloaded = first, written, 0, 0, 0
    if direct is not None and first == 0 and entry.size >= DIRECT_MIN_SIZE and direct.start(fd):
        put: Callable[[bytes], None] = direct.write
    else:
        direct = None
        put = functools.partial(write_all, fd)
    for index in range(first, len(entry.blocks)):
        plain = source.cached(entry.blocks[index])
        if plain is not None:
            from_cache += 1
        else:
            try:
                plain, stored_bytes = source.read(store, entry, index)
            except NotFetched:
                end = min(index + FETCH_WINDOW, len(entry.blocks))
                missing = [i for i in range(index, end) if source.lacks(entry.blocks[i])]
                return Step(fd, False, index, written, missing or [index],
                            Tally(written - start, from_cache, fetched, downloaded), hasher)
            if stored_bytes is not None:
                fetched += 1
                downloaded += stored_bytes
        written += len(plain)
        if written > entry.size:
            raise HostileFlist(
                f"file {entry.path!r}: its blocks hold more than the {entry.size} bytes the entry says"
            )
        put(plain)
        if hasher is not None:
            hasher.update(plain)
        if on_bytes is not None:
            on_bytes(len(plain))
    if written != entry.size:
        raise HostileFlist(
            f"file {entry.path!r}: its blocks hold {written} bytes but the entry says {entry.size}"
        )
    if direct is not None:
        direct.finish()
    skipped = _seal(entry, fd, as_root)
    digest = ""
    if hasher is not None:  # sealed: its mtime is the flist's now, and no later write keeps it
        sealed = os.fstat(fd)
        digest = WrittenFile(hasher.hexdigest(), sealed.st_ino, sealed.st_mtime_ns).text()
    return Step(fd, True, len(entry.blocks), written, [],
                Tally(written - start, from_cache, fetched, downloaded, skipped, digest))


def _seal(entry: Entry, fd: int, as_root: bool) -> bool:
    """Owner (as root), mode and mtime of the written file; True when the owner had to be skipped."""
    skipped = False
    if as_root:
        os.fchown(fd, entry.uid, entry.gid)
    else:
        skipped = (entry.uid, entry.gid) != (os.geteuid(), os.getegid())
    os.fchmod(fd, entry.permissions)
    os.utime(fd, ns=(entry.mtime * 1_000_000_000,) * 2)
    return skipped
