"""A power-loss model: which of the transaction's writes would survive a power cut at each step.

While an upgrade runs IN THIS PROCESS, :class:`DurabilityTracker` wraps ``os.fsync``, the flist
layer's ``syncfs`` and the calls that create inodes (``os.open`` with ``O_CREAT``, ``os.mkdir``,
``os.symlink``), and records one *durability event* per sync:

* ``fsync`` of a regular file makes that inode's current bytes and mode durable;
* ``fsync`` of a directory makes its current entry list durable (names -> inodes, kinds, modes,
  symlink targets): renames, unlinks, links and creations in that directory count only from then on;
* ``syncfs`` makes everything under the tracked roots durable.

Everything on disk when tracking starts counts as durable. :meth:`DurabilityTracker.rebuild` then
builds, for a cut after the first ``k`` events, the tree a machine would find after the power came
back: directories hold only their last durable entries, a file holds its last fsynced bytes, or
nothing (empty) if it was never fsynced — a torn write is modelled as the worst case, an empty file.
Hard links are kept (the backup is a hard link of the node's file).

What the model covers: lost renames/unlinks/creations in any directory not fsynced yet, lost file
contents not fsynced yet, each directory independently (stricter than a journaling file system, which
commits a rename in one transaction). What it does not cover: reordering or tearing INSIDE one fsync
(an fsynced file is all-or-nothing at the moment of its fsync), writes by child processes (hooks;
ours write nothing on the node), files created without ``os.open`` (e.g. ``open(path, "xb")``: their
inode is recognised at first sight, so an inode number reused by such a file could be confused with
its previous owner), metadata other than mode (owners, times), and services (no supervisor runs in
the model).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zos_upgrade.flist import durability


@dataclass(frozen=True)
class EntryRecord:
    """One directory entry as a directory fsync made it durable."""

    token: int          # the inode's identity (not its number: numbers are reused)
    kind: str           # "dir" | "file" | "link" | "other"
    mode: int
    target: str | None  # symlink target


DirState = dict[int, dict[str, EntryRecord]]   # dir token -> its durable entries
FileState = dict[int, tuple[bytes, int]]       # file token -> durable (content, mode)


@dataclass(frozen=True)
class Event:
    what: str  # "fsync-file" | "fsync-dir" | "syncfs"
    path: str
    dirs: DirState
    files: FileState


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


class DurabilityTracker:
    """Records durability events for the trees under ``roots`` while :meth:`tracking` is active."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self._tokens: dict[tuple[int, int], int] = {}
        self._lock = threading.RLock()
        self.events: list[Event] = []
        self.initial_dirs: DirState = {}
        self.initial_files: FileState = {}
        self.root_tokens: list[int] = []
        self._counter = 0

    # -- identities -------------------------------------------------------------------------

    def _token(self, st: os.stat_result) -> int:
        key = (st.st_dev, st.st_ino)
        with self._lock:
            if key not in self._tokens:
                self._tokens[key] = self._fresh()
            return self._tokens[key]

    def _fresh(self) -> int:
        self._counter += 1
        return self._counter

    def _born(self, st: os.stat_result) -> None:
        """A new inode: any earlier inode with the same number is a different file."""
        with self._lock:
            self._tokens[(st.st_dev, st.st_ino)] = self._fresh()

    def _tracked(self, path: str) -> bool:
        p = Path(path)
        return any(p == r or r in p.parents for r in self.roots)

    # -- snapshots --------------------------------------------------------------------------

    def _entries(self, path: str) -> dict[str, EntryRecord]:
        out: dict[str, EntryRecord] = {}
        with os.scandir(path) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                    target = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None
                except FileNotFoundError:
                    continue  # removed while we looked: a concurrent thread's unlink
                out[entry.name] = EntryRecord(self._token(st), _kind(st.st_mode), stat.S_IMODE(st.st_mode),
                                              target)
        return out

    def _content(self, path: str) -> tuple[bytes, int] | None:
        try:
            with open(path, "rb") as handle:
                return handle.read(), stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        except (FileNotFoundError, PermissionError):
            return None

    def _everything(self) -> tuple[DirState, FileState]:
        dirs: DirState = {}
        files: FileState = {}
        for root in self.roots:
            for dirpath, _dirnames, filenames in os.walk(root):
                dirs[self._token(os.lstat(dirpath))] = self._entries(dirpath)
                for name in filenames:
                    full = os.path.join(dirpath, name)
                    st = os.lstat(full)
                    if stat.S_ISREG(st.st_mode):
                        content = self._content(full)
                        if content is not None:
                            files[self._token(st)] = content
        return dirs, files

    def start(self) -> None:
        self.initial_dirs, self.initial_files = self._everything()
        self.root_tokens = [self._token(os.lstat(r)) for r in self.roots]

    # -- the shim ---------------------------------------------------------------------------

    def _after_fsync(self, fd: int) -> None:
        st = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not self._tracked(path):
            return
        with self._lock:
            if stat.S_ISDIR(st.st_mode):
                self.events.append(Event("fsync-dir", path, {self._token(st): self._entries(path)}, {}))
            elif stat.S_ISREG(st.st_mode):
                content = self._content(f"/proc/self/fd/{fd}")
                if content is not None:
                    self.events.append(Event("fsync-file", path, {}, {self._token(st): content}))

    def _after_syncfs(self) -> None:
        with self._lock:
            dirs, files = self._everything()
            self.events.append(Event("syncfs", "", dirs, files))

    @contextlib.contextmanager
    def tracking(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        real_fsync, real_open, real_mkdir, real_symlink = os.fsync, os.open, os.mkdir, os.symlink
        real_syncfs = durability._SYNCFS

        def fsync(fd: int) -> None:
            real_fsync(fd)
            self._after_fsync(fd)

        def syncfs(fd: int) -> None:
            if real_syncfs is not None:
                real_syncfs(fd)
            self._after_syncfs()

        def _exists(path: Any, dir_fd: int | None) -> bool:
            try:
                os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
                return True
            except (FileNotFoundError, NotADirectoryError):
                return False

        def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
            existed = bool(flags & os.O_CREAT) and _exists(path, dir_fd)
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            if flags & os.O_CREAT and not existed:
                self._born(os.fstat(fd))
            return fd

        def created(real: Callable[..., None]) -> Callable[..., None]:
            def wrapper(*args: Any, **kwargs: Any) -> None:
                real(*args, **kwargs)
                path = args[1] if real is real_symlink else args[0]
                self._born(os.stat(path, dir_fd=kwargs.get("dir_fd"), follow_symlinks=False))
            return wrapper

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "mkdir", created(real_mkdir))
        monkeypatch.setattr(os, "symlink", created(real_symlink))
        monkeypatch.setattr(durability, "_SYNCFS", syncfs)
        try:
            yield
        finally:
            monkeypatch.undo()

    # -- after the cut ----------------------------------------------------------------------

    def states(self) -> Iterator[tuple[int, DirState, FileState]]:
        """(k, durable dirs, durable files) for a cut after each prefix of k events, k = 0..N."""
        dirs, files = dict(self.initial_dirs), dict(self.initial_files)
        yield 0, dirs, files
        for k, event in enumerate(self.events, start=1):
            dirs = {**dirs, **event.dirs}
            files = {**files, **event.files}
            yield k, dirs, files

    def rebuild(self, dirs: DirState, files: FileState, dests: list[Path]) -> None:
        """Write the durable trees of the roots to ``dests`` (same order as ``roots``)."""
        made: dict[int, Path] = {}
        for token, dest in zip(self.root_tokens, dests, strict=True):
            dest.parent.mkdir(parents=True, exist_ok=True)
            _build(dest, token, 0o755, dirs, files, made)


def _build(path: Path, token: int, mode: int, dirs: DirState, files: FileState,
           made: dict[int, Path]) -> None:
    path.mkdir(mode=0o700)
    for name, rec in sorted(dirs.get(token, {}).items()):
        child = path / name
        if rec.kind == "dir":
            _build(child, rec.token, rec.mode, dirs, files, made)
        elif rec.kind == "link":
            os.symlink(rec.target or "", child)
        elif rec.kind == "file":
            if rec.token in made:
                os.link(made[rec.token], child)
                continue
            content, file_mode = files.get(rec.token, (b"", rec.mode))
            child.write_bytes(content)
            os.chmod(child, file_mode)
            made[rec.token] = child
    os.chmod(path, mode)
