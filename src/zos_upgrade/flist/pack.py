"""directory -> flist + blocks (SPEC 4): the release engineer's side of the flist layer.

Deterministic by construction: the tree is walked in sorted order, every value in an entry comes from
the tree itself (``ctime`` is set to ``mtime`` so copying a tree does not change its flist), and block
ids depend only on content. The same tree therefore gives a byte-identical block set and an identical
listing, wherever and whenever it is packed.

Symlinks are recorded, never followed, so nothing outside ``src`` is read. Chunks are read, hashed,
compressed and encrypted in worker threads (hashlib, cramjam and cryptography release the GIL), and
each block is written to the store only when the store does not already have it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import grp
import logging
import os
import pwd
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from zos_upgrade.flist.blocks import encrypt_block
from zos_upgrade.flist.chunking import CHUNKING_TAG, FIXED, Chunking, file_spans
from zos_upgrade.flist.formats import format_for_name, write_flist
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError
from zos_upgrade.flist.stores import BlockStore, Route
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
        entries = await packer.pack_tree(src)
    finally:
        packer.close()
    await asyncio.to_thread(write_flist, out, entries, tags=tags, routes=routes)
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


def _seal_chunk(path: Path, offset: int, length: int, fmt: Literal["v1", "v2"]) -> tuple[BlockRef, bytes]:
    """Read one chunk of ``path`` and turn it into a block (runs in a worker thread)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        chunk = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    if len(chunk) != length:
        raise PackError(f"{path} changed while packing: expected {length} bytes at offset {offset}, "
                        f"read {len(chunk)}")
    return encrypt_block(chunk, fmt)


class _Packer:
    def __init__(self, fmt: Literal["v1", "v2"], store: BlockStore, report: PackReport,
                 progress: Progress | None, workers: int, chunking: Chunking = FIXED) -> None:
        self.fmt = fmt
        self.chunking = chunking
        self.store = store
        self.report = report
        self.progress = progress
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zu-pack")
        # bounds chunks in memory (read but not yet stored) to about twice the worker count
        self.limit = asyncio.Semaphore(workers * 2)
        self.seen: dict[bytes, asyncio.Future[None]] = {}

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def pack_tree(self, src: Path) -> list[Entry]:
        entries: list[Entry] = []
        pending: list[tuple[int, asyncio.Task[tuple[tuple[BlockRef, ...], tuple[int, ...]]]]] = []
        try:
            for path, st, disk in _walk(src):
                entry = self._entry(path, st, disk)
                if entry.kind is EntryKind.FILE and entry.size:
                    pending.append((len(entries), asyncio.create_task(self._file_blocks(disk, entry.size))))
                entries.append(entry)
            for index, task in pending:
                blocks, lengths = await task
                entries[index] = dataclasses.replace(entries[index], blocks=blocks, lengths=lengths)
        except BaseException:
            for _, task in pending:
                task.cancel()
            await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
            raise
        return entries

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

    async def _file_blocks(self, disk: Path, size: int) -> tuple[tuple[BlockRef, ...], tuple[int, ...]]:
        """The blocks of one file, and their lengths when the chunking is content-defined."""
        try:
            spans = await asyncio.get_running_loop().run_in_executor(
                self.pool, file_spans, disk, size, self.chunking)
        except (OSError, ValueError) as exc:  # ValueError: mmap of a file that shrank under us
            raise PackError(f"cannot read {disk}: {exc}") from exc
        blocks = tuple(await all_or_cancel(self._block(disk, off, length) for off, length in spans))
        return blocks, tuple(n for _, n in spans) if self.chunking.kind == "cdc" else ()

    async def _block(self, disk: Path, offset: int, length: int) -> BlockRef:
        async with self.limit:
            loop = asyncio.get_running_loop()
            try:
                ref, stored = await loop.run_in_executor(
                    self.pool, _seal_chunk, disk, offset, length, self.fmt
                )
            except OSError as exc:
                raise PackError(f"cannot read {disk}: {exc.strerror}") from exc
            self.report.bytes_read += length
            self.report.blocks += 1
            await self._upload(ref, stored)
        if self.progress is not None:
            self.progress(length)
        return ref

    async def _upload(self, ref: BlockRef, stored: bytes) -> None:
        """Put a block in the store unless it has it; each id is handled once per pack."""
        done = self.seen.get(ref.id)
        if done is not None:
            await done
            return
        done = self.seen[ref.id] = asyncio.get_running_loop().create_future()
        try:
            self.report.blocks_unique += 1
            if await self.store.has(ref.id):
                self.report.blocks_present += 1
            else:
                await self.store.put(ref.id, stored)
                self.report.blocks_uploaded += 1
                self.report.bytes_uploaded += len(stored)
        except BaseException as exc:
            del self.seen[ref.id]
            done.set_exception(exc)
            done.exception()
            raise
        done.set_result(None)

