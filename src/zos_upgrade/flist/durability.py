"""The durability step of a materialize: written files flushed and renamed in batches, then the
directories sealed and the whole tree made durable before it returns.

Each regular file is written under a temporary name (:class:`TempNames`) in its directory, closed,
and only then given its final name, after it is on disk: so no file ever carries its final name with
partial content. Files are flushed in batches with one ``syncfs`` (where the platform has it)
instead of one ``fsync`` each: the same guarantee, a fraction of the journal commits. A batch is
flushed and renamed in a thread while the walk goes on, one batch at a time. Directory modes and
mtimes are applied last, deepest first, so writing their contents neither fails on a read-only
directory nor bumps the mtime we restored; then one last ``syncfs`` covers the whole tree.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from zos_upgrade.flist.filewrite import DIR_OPEN, DirFds
from zos_upgrade.flist.model import Entry, HostileFlist
from zos_upgrade.flist.tree_checks import split_path
from zos_upgrade.fsutil import TEMP_MARK

__all__ = ["FSYNC_EACH_UP_TO", "Durability", "TempNames", "sync_file_system"]

# A batch of written files is flushed and renamed when it reaches either bound: a bounded amount of
# dirty data per flush, and a bounded list in memory for million-entry flists.
_BATCH_FILES = 1024
_BATCH_BYTES = 256 * 1024 * 1024
# Up to this many files in a batch, or directories in a tree, each is fsynced instead: a syncfs also
# waits for every dirty page of the file system, other programs' too (a partial tree is a few files)
FSYNC_EACH_UP_TO = 32


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


# read by each run when it starts (the power-loss tests replace it to see every syncfs)
_SYNCFS = _load_syncfs()


def sync_file_system(fd: int) -> bool:
    """``syncfs`` of the file system ``fd`` is on: everything written there is durable after it.
    False where the platform has no syncfs (the caller fsyncs what it wrote instead)."""
    if _SYNCFS is None:
        return False
    _SYNCFS(fd)
    return True


class TempNames:
    """Temporary names of one run's files: no entry can take one by design (they carry the
    temporary-file mark), they are unpredictable for the run and unique within it."""

    def __init__(self) -> None:
        self._token = secrets.token_hex(4)
        self._given = 0

    def next(self, parts: list[str]) -> str:
        """A fresh temporary name beside the entry ``parts``."""
        self._given += 1
        return f".{parts[-1][:200]}{TEMP_MARK}{self._token}{self._given:x}"


@dataclass(frozen=True)
class _Written:
    parts: list[str]
    tmp: str
    synced: bool = False  # its writer fsynced it already (a partial run's few files)


class Durability:
    """The files of one run waiting to be flushed and renamed, the batch being renamed, and the last
    step that seals the tree. ``on_named`` hears of each path once it carries its final name."""

    def __init__(self, fds: DirFds, on_named: Callable[[str], None]) -> None:
        self._fds = fds
        self._on_named = on_named
        self.syncfs = _SYNCFS
        self._written: list[_Written] = []
        self._written_bytes = 0
        self._renaming: asyncio.Task[None] | None = None
        self._files = 0  # flushed and renamed so far

    def closed(self, parts: list[str], tmp: str, size: int, *, synced: bool = False) -> None:
        """The file ``parts`` is written, sealed and closed as ``tmp`` (``synced``: and fsynced by its
        writer): it waits for the next batch."""
        self._written.append(_Written(parts, tmp, synced))
        self._written_bytes += size

    async def rename_if_full(self) -> None:
        """Start the next batch when the files waiting reach a batch's bounds."""
        if len(self._written) >= _BATCH_FILES or self._written_bytes >= _BATCH_BYTES:
            await self._start_batch()

    async def rename_all(self) -> None:
        """After the last file: flush and rename every file still waiting, and wait for it."""
        await self._start_batch()
        if self._renaming is not None:
            await self._renaming

    async def settle(self) -> None:
        """After a failure: let a batch being renamed finish before anyone cleans up (its errors are
        the failure's consequences, not news)."""
        if self._renaming is not None:
            await asyncio.gather(self._renaming, return_exceptions=True)

    async def _start_batch(self) -> None:
        """Start flushing and renaming the files written so far in a thread, once the batch before
        is done: the flush overlaps with fetching and writing the next files."""
        if self._renaming is not None:
            await self._renaming
            self._renaming = None
        batch, self._written, self._written_bytes = self._written, [], 0
        if batch:
            self._renaming = asyncio.create_task(asyncio.to_thread(self._flush_and_rename, batch))

    def _flush_and_rename(self, batch: list[_Written]) -> None:
        self._files += len(batch)
        each = self.syncfs is None or len(batch) <= FSYNC_EACH_UP_TO
        if not each and self.syncfs is not None:
            self.syncfs(self._fds.root)  # every file of the batch is on disk before any is renamed
        for item in batch:
            name = item.parts[-1]
            with self._fds.parent(item.parts) as pfd:
                if each and not item.synced:
                    fd = os.open(item.tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                if _exists(name, pfd):
                    raise HostileFlist(f"entry '/{'/'.join(item.parts)}' appears twice")
                os.rename(item.tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            self._on_named("/" + "/".join(item.parts))

    def seal(self, dirs_deepest_first: list[Entry], root: Entry | None, as_root: bool) -> None:
        """Modes and mtimes of directories, deepest first, then owner, mode and mtime of the
        destination itself from the root entry; then make the whole tree durable (one ``syncfs``,
        or an fsync of every directory without it or for a small tree). Blocking: run it in a thread."""
        each = self.syncfs is None or (self._files <= FSYNC_EACH_UP_TO
                                       and len(dirs_deepest_first) <= FSYNC_EACH_UP_TO)
        for entry in dirs_deepest_first:
            cached = self._fds.get(entry.path)
            if cached is not None:
                _seal_dir(cached, entry.permissions, entry.mtime, each)
                continue
            parts = split_path(entry.path)
            with self._fds.parent(parts) as pfd:
                fd = os.open(parts[-1], DIR_OPEN, dir_fd=pfd)
                try:
                    _seal_dir(fd, entry.permissions, entry.mtime, each)
                finally:
                    os.close(fd)
        top = self._fds.root
        if root is not None:
            if as_root:
                os.fchown(top, root.uid, root.gid)
            _seal_dir(top, root.permissions, root.mtime, False)
        if not each and self.syncfs is not None:
            self.syncfs(top)
        else:
            os.fsync(top)


def _exists(name: str, pfd: int) -> bool:
    try:
        os.lstat(name, dir_fd=pfd)
    except FileNotFoundError:
        return False
    return True


def _seal_dir(fd: int, mode: int, mtime: int, fsync: bool) -> None:
    os.fchmod(fd, mode)
    os.utime(fd, ns=(mtime * 1_000_000_000,) * 2)
    if fsync:
        os.fsync(fd)
