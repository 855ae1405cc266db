"""directory -> flist + blocks (SPEC 4): the release engineer's side of the flist layer.

Deterministic by construction: the tree is walked in sorted order, every value in an entry comes from
the tree itself (``ctime`` is set to ``mtime`` so copying a tree does not change its flist), and block
ids depend only on content. The same tree therefore gives a byte-identical block set and an identical
listing, wherever and whenever it is packed.

Symlinks are recorded, never followed, so nothing outside ``src`` is read. Chunks are read, hashed,
compressed and encrypted in worker threads (hashlib, cramjam, xxtea and cryptography release the
GIL), in jobs of a few chunks; a store that writes from threads (``zdb://``, ``dir://``) gets each
job's new blocks from the same worker in one batch, any other through the event loop. Each block is
written to the store only when the store does not already have it, and by one job only. Parallelism
changes nothing in the flist: every block lands in its entry's slot, whichever job sealed it first.
The flist is written meanwhile by a thread of its own, fed each entry once final (``pack_feed``).
"""

from __future__ import annotations

import asyncio
import functools
import grp
import logging
import os
import pwd
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from zos_upgrade.flist.blocks import Sealer
from zos_upgrade.flist.chunking import CHUNKING_TAG, FIXED, Chunking, file_spans
from zos_upgrade.flist.formats import format_for_name, write_flist
from zos_upgrade.flist.model import BLOCK_SIZE, BlockRef, Entry, EntryKind, FlistError
from zos_upgrade.flist.pack_feed import EntryFeed
from zos_upgrade.flist.stores import BlockStore, Route, Router, SyncUploader
from zos_upgrade.tasks import all_or_cancel

__all__ = ["PackError", "PackReport", "flist_format", "pack"]

log = logging.getLogger(__name__)

Progress = Callable[[int], None]

# What zflist records as the size of a directory; the real st_size depends on the file system.
_DIR_SIZE = 4096


class PackError(FlistError):
    """The source tree cannot be packed (unreadable, changing under us, contains the output...)."""


@dataclass
class PackReport:
    entries: int = 0
    files: int = 0
    dirs: int = 0
    links: int = 0
    specials: int = 0
    bytes_read: int = 0
    blocks: int = 0  # block references in the flist
    blocks_unique: int = 0
    blocks_uploaded: int = 0
    blocks_present: int = 0  # the store already had them
    bytes_uploaded: int = 0


def flist_format(out: Path) -> Literal["v1", "v2"]:
    """The format an output name asks for: ``.fl`` is v2 (rfs), ``.flist`` is v1 (0-flist)."""
    try:
        return format_for_name(out)
    except FlistError as exc:
        raise PackError(f"output {exc}") from exc


async def pack(
    src: Path,
    out: Path,
    store: BlockStore,
    *,
    tags: Mapping[str, str] = {},
    routes: Sequence[Route] = (),
    progress: Progress | None = None,
    workers: int | None = None,
    chunking: Chunking = FIXED,
) -> PackReport:
    """Pack the tree at ``src`` into the flist ``out`` (format by suffix), uploading blocks to ``store``.

    ``chunking`` says where files are cut (``flist.chunking``): content-defined chunks are v2 only,
    and the flist's ``chunking`` tag records them."""
    src, out = Path(src), Path(out)
    fmt = flist_format(out)
    if chunking.tag_value is not None:
        if fmt != "v2":
            raise PackError(f"output {out}: content-defined chunking needs a v2 .fl flist; a v1 .flist "
                            "records one fixed block size")
        if tags.get(CHUNKING_TAG, chunking.tag_value) != chunking.tag_value:
            raise PackError(f"tag {CHUNKING_TAG}={tags[CHUNKING_TAG]!r} contradicts the chunking asked for "
                            f"({chunking.tag_value})")
        tags = {**tags, CHUNKING_TAG: chunking.tag_value}
    elif CHUNKING_TAG in tags:
        raise PackError(f"tag {CHUNKING_TAG!r} is set by the packer (use --chunking), not by hand")
    try:
        src_stat = os.stat(src)
    except OSError as exc:
        raise PackError(f"source {src}: {exc.strerror}: expected a readable directory") from exc
    if not stat.S_ISDIR(src_stat.st_mode):
        raise PackError(f"source {src} is not a directory")
    real_src = src.resolve()
    real_out = out.parent.resolve() / out.name
    if real_out == real_src or real_src in real_out.parents:
        raise PackError(f"output {out} is inside the source tree {src}: it would pack itself")

    report = PackReport()
    packer = _Packer(fmt, store, report, progress, workers or min(32, (os.cpu_count() or 1) + 2), chunking)
    try:
        await packer.pack_tree(src, functools.partial(write_flist, out, tags=tags, routes=routes))
    finally:
        packer.close()
    log.info("flist packed", extra={"source": str(src), "flist": str(out), "format": fmt, **report.__dict__})
    return report


@lru_cache(maxsize=256)
def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@lru_cache(maxsize=256)
def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result, Path]]:
    """(flist path, lstat, disk path) for the root and everything under it, parents first, sorted."""
    yield "/", os.lstat(root), root
    stack: list[tuple[str, Path]] = [("/", root)]
    while stack:
        flist_dir, disk_dir = stack.pop()
        try:
            with os.scandir(disk_dir) as scan:
                names = sorted(child.name for child in scan)
        except OSError as exc:
            raise PackError(f"cannot list directory {disk_dir}: {exc.strerror}") from exc
        subdirs: list[tuple[str, Path]] = []
        for name in names:
            path = f"/{name}" if flist_dir == "/" else f"{flist_dir}/{name}"
            disk = disk_dir / name
            try:
                st = os.lstat(disk)
            except OSError as exc:
                raise PackError(f"cannot stat {disk}: {exc.strerror}") from exc
            yield path, st, disk
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((path, disk))
        # depth first, in name order: pushed reversed so the smallest name is popped first
        stack.extend(reversed(subdirs))


# A job is the unit a worker thread takes: chunks of one or more files, read, sealed and uploaded as one
# batch (one EXISTS and one SET round trip into 0-db). Small enough to spread a big file over both
# cores and to bound memory (workers + 2 jobs in flight), big enough that the round trips cost
# little: measured on an in-process pack of 200 MB into a real zdb (load 2), wall 5.2 s with jobs of
# one block, 2.4 s with 4, 1.33 s with 16 (a null store: 0.8 s whatever the size). Those round trips
# each paid a ~40 ms delayed ACK then (fixed in stores/resp.py); 16 is kept, not re-tuned since.
_JOB_BYTES = 16 * BLOCK_SIZE
_JOB_CHUNKS = 64


@dataclass(frozen=True, slots=True)
class _Piece:
    entry: int  # index of the file's entry
    block: int  # index of the block in the file
    disk: Path
    offset: int
    length: int


@dataclass(slots=True)
class _Sealed:
    refs: list[BlockRef]
    # the blocks this job claimed first in the pack (each id is uploaded by one job only): their
    # stored bytes for the event loop to upload (emptied once uploaded), their stored sizes, and,
    # once uploaded, whether the store lacked each of them
    claimed: list[tuple[BlockRef, bytes]]
    sizes: list[int]
    uploaded: list[bool] | None


class _Claims:
    """Which block ids some job already took charge of, shared by the worker threads."""

    def __init__(self) -> None:
        self._ids: set[bytes] = set()
        self._lock = threading.Lock()

    def take(self, block_id: bytes) -> bool:
        with self._lock:
            if block_id in self._ids:
                return False
            self._ids.add(block_id)
            return True


class _Scratch(threading.local):
    """A worker thread's own sealer and read buffer, kept from job to job (blocks.Sealer says why)."""

    def __init__(self) -> None:
        self.sealers: dict[str, Sealer] = {}
        self.plain = bytearray(BLOCK_SIZE)

    def sealer(self, fmt: Literal["v1", "v2"]) -> Sealer:
        if fmt not in self.sealers:
            self.sealers[fmt] = Sealer(fmt)
        return self.sealers[fmt]


_scratch = _Scratch()


def _read(fd: int, piece: _Piece, buffer: bytearray) -> memoryview:
    """The piece's bytes, read into ``buffer`` (valid until the next read into it)."""
    view = memoryview(buffer)[:piece.length]
    got = os.preadv(fd, [view], piece.offset)
    if got != piece.length:
        raise PackError(f"{piece.disk} changed while packing: expected {piece.length} bytes at offset "
                        f"{piece.offset}, read {got}")
    return view


def _seal_job(pieces: Sequence[_Piece], fmt: Literal["v1", "v2"], claims: _Claims,
              upload: Callable[[Sequence[tuple[bytes, bytes]]], list[bool]] | None) -> _Sealed:
    """Read, seal and (with ``upload``) store one job's chunks; runs in a worker thread.

    hashlib, cramjam, xxtea, cryptography and socket calls all release the GIL, so the workers run
    in parallel on every core for most of a job."""
    refs: list[BlockRef] = []
    claimed: list[tuple[BlockRef, bytes]] = []
    sealer, buffer = _scratch.sealer(fmt), _scratch.plain
    fd, fd_path = -1, None
    try:
        for piece in pieces:
            if piece.disk != fd_path:  # a job's pieces of one file come together: one open per file
                if fd >= 0:
                    os.close(fd)
                    fd = -1
                fd = os.open(piece.disk, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                fd_path = piece.disk
            ref, stored = sealer.seal(_read(fd, piece, buffer))
            refs.append(ref)
            if claims.take(ref.id):
                claimed.append((ref, stored))
    except OSError as exc:
        raise PackError(f"cannot read {exc.filename or fd_path}: {exc.strerror}") from exc
    finally:
        if fd >= 0:
            os.close(fd)
    sizes = [len(stored) for _, stored in claimed]
    if upload is None:
        return _Sealed(refs, claimed, sizes, None)
    uploaded = upload([(ref.id, stored) for ref, stored in claimed]) if claimed else []
    return _Sealed(refs, [(ref, b"") for ref, _ in claimed], sizes, uploaded)


class _Packer:
    def __init__(self, fmt: Literal["v1", "v2"], store: BlockStore, report: PackReport,
                 progress: Progress | None, workers: int, chunking: Chunking = FIXED) -> None:
        self.fmt = fmt
        self.chunking = chunking
        self.store = store
        self.report = report
        self.progress = progress
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zu-pack")
        # bounds jobs in memory (read but not yet stored): each holds up to _JOB_BYTES of blocks
        self.limit = asyncio.Semaphore(workers + 2)
        self.claims = _Claims()
        # a store that writes from the worker threads gets each job's blocks there, batched;
        # any other store gets them through the event loop, one has/put per block
        self.upload = _sync_upload(store)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def pack_tree(self, src: Path, write: Callable[[Iterable[Entry]], None]) -> None:
        """Walk ``src``, seal and store its blocks, and ``write`` its entries (in a thread of its own,
        fed each entry once final: the flist is written while the workers seal, not after)."""
        feed = EntryFeed()
        pending: list[asyncio.Task[None]] = []
        writer: asyncio.Future[None] | None = None
        job: list[_Piece] = []
        job_bytes = 0
        try:
            for path, st, disk in _walk(src):
                entry = self._entry(path, st, disk)
                if not (entry.kind is EntryKind.FILE and entry.size):
                    feed.add(entry)
                    continue
                spans = self._spans(disk, entry.size)
                # content-defined chunks: the flist records each block's length
                lengths = tuple(length for _, length in spans) if self.chunking.kind == "cdc" else ()
                index = feed.add(entry, len(spans), lengths)
                for number, (offset, length) in enumerate(spans):
                    job.append(_Piece(index, number, disk, offset, length))
                    job_bytes += length
                    if job_bytes >= _JOB_BYTES or len(job) >= _JOB_CHUNKS:
                        pending.append(asyncio.create_task(self._job(job, feed)))
                        job, job_bytes = [], 0
                        # let the job reach a worker now: the workers seal while the walk goes on
                        await asyncio.sleep(0)
            if job:
                pending.append(asyncio.create_task(self._job(job, feed)))
            feed.close()
            # started once every job is queued: its first import (v1: capnp, ~50 ms) does not slow
            # the walk, and the event loop keeps handing out jobs while it runs
            writer = asyncio.ensure_future(asyncio.to_thread(write, feed))
            await all_or_cancel(pending)
        except BaseException:
            feed.abandon()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if writer is not None:  # its thread stops at FeedAbandoned and drops its temporary files
                await asyncio.gather(writer, return_exceptions=True)
            raise
        await writer

    def _spans(self, disk: Path, size: int) -> list[tuple[int, int]]:
        """Where the file at ``disk`` (``size`` bytes) is cut into blocks, as (offset, length) pairs:
        the one place files are cut (``chunking.file_spans``: fixed blocks at file offsets, which rfs
        and 0-flist read back, or content-defined chunks, read from the file at a few GB/s)."""
        try:
            return file_spans(disk, size, self.chunking)
        except (OSError, ValueError) as exc:  # ValueError: mmap of a file that shrank under us
            raise PackError(f"cannot read {disk}: {exc}") from exc

    def _entry(self, path: str, st: os.stat_result, disk: Path) -> Entry:
        mode, size, target, rdev = st.st_mode, 0, "", 0
        self.report.entries += 1
        if stat.S_ISDIR(mode):
            kind, size = EntryKind.DIR, _DIR_SIZE
            self.report.dirs += 1
        elif stat.S_ISREG(mode):
            kind, size = EntryKind.FILE, st.st_size
            self.report.files += 1
        elif stat.S_ISLNK(mode):
            try:
                target = os.readlink(disk)
            except OSError as exc:
                raise PackError(f"cannot read symlink {disk}: {exc.strerror}") from exc
            kind, size = EntryKind.LINK, len(os.fsencode(target))
            self.report.links += 1
        else:
            kind, rdev = EntryKind.SPECIAL, st.st_rdev
            self.report.specials += 1
        mtime = int(st.st_mtime)
        return Entry(
            path=path, kind=kind, mode=mode, size=size, uid=st.st_uid, gid=st.st_gid,
            mtime=mtime, ctime=mtime, target=target, rdev=rdev,
            user=_user(st.st_uid), group=_group(st.st_gid),
        )

    async def _job(self, pieces: list[_Piece], feed: EntryFeed) -> None:
        async with self.limit:
            loop = asyncio.get_running_loop()
            sealed = await loop.run_in_executor(
                self.pool, _seal_job, pieces, self.fmt, self.claims, self.upload)
            if sealed.uploaded is None:
                sealed.uploaded = await all_or_cancel(
                    self._upload(ref, stored) for ref, stored in sealed.claimed)
        report = self.report
        feed.sealed((piece.entry, piece.block, ref) for piece, ref in zip(pieces, sealed.refs, strict=True))
        report.bytes_read += sum(piece.length for piece in pieces)
        report.blocks += len(pieces)
        report.blocks_unique += len(sealed.claimed)
        for size, took in zip(sealed.sizes, sealed.uploaded, strict=True):
            report.blocks_uploaded += took
            report.blocks_present += not took
            report.bytes_uploaded += size if took else 0
        if self.progress is not None:
            self.progress(sum(piece.length for piece in pieces))

    async def _upload(self, ref: BlockRef, stored: bytes) -> bool:
        """Put a block in the store unless it has it (True: uploaded); each id comes here once."""
        if await self.store.has(ref.id):
            return False
        await self.store.put(ref.id, stored)
        return True


def _sync_upload(store: BlockStore) -> Callable[[Sequence[tuple[bytes, bytes]]], list[bool]] | None:
    """The store's thread-side batch upload, when it has one (``zdb://``, ``dir://``, a router of them)."""
    if isinstance(store, Router):
        return store.upload_missing if store.uploads_sync() else None
    if isinstance(store, SyncUploader):
        return store.upload_missing
    return None

