"""The node's files during a transaction: confined paths, backup by hard link, atomic apply, restore.

Every operation is idempotent, because recovery may repeat any of them after a crash:
backing up a path already backed up does nothing; restoring a path whose backup is gone does nothing
(the restore already happened: it is a rename); removing what is absent does nothing.

A staged file is applied by moving its inode out of the staged tree: one ``rename`` over the old
file (atomic, no second copy; the tree is on the state's file system and durable already: the mount
ended with ``syncfs``). Only when the tree is on another file system (``EXDEV``) is it copied to
``<file>.zu-new``, fsynced and renamed over. Moving, not hard-linking, is deliberate: removing a
second name of an inode later (the mount's prune) would move the node file's ctime and void the
stamp the apply takes (``stamps.py``). The caller fsyncs each directory it touched once, after the
batch (:meth:`NodeFS.sync_dirs`). The old inode survives in the backup (a hard link), so rollback
is a rename back. What the apply adds is recorded beside the backup before anything moves
(:meth:`NodeFS.note_added`): with the journal unreadable, ``restore.py`` finds those files by it,
since they left the staged tree.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from zos_upgrade.fsutil import atomic_write_bytes, fsync_dir, read_at_most
from zos_upgrade.upgrade.dirs import ensure_dir
from zos_upgrade.upgrade.errors import UnsafePath, UpgradeError
from zos_upgrade.upgrade.manifest import FileRecord, record_of

__all__ = [
    "ADDED_SUFFIX", "NEW_SUFFIX", "NodeFS", "StagedFileChanged", "check_applied", "check_relative",
    "copy_entry",
]

log = logging.getLogger(__name__)

NEW_SUFFIX = ".zu-new"
# directories a batch fsyncs one by one; more: one syncfs per file system (flist.durability's
# FSYNC_EACH_UP_TO: a syncfs waits for other programs' dirty pages too; not imported, as it loads libc)
_FSYNC_EACH_UP_TO = 32
ADDED_SUFFIX = ".added.json"
_MAX_ADDED_BYTES = 256 * 1024 * 1024
_COPY_CHUNK = 1 << 20


def check_relative(rel: str, where: str) -> str:
    """Refuse a path that is not a plain relative path (absolute, ``..``, ``.``, empty part, NUL)."""
    parts = rel.split("/")
    if not rel or "\0" in rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"{where}: path {rel!r} is not a plain relative path (no '..', '.', '//' or NUL)")
    return rel


class StagedFileChanged(UpgradeError):
    """A staged file no longer has the content the plan recorded."""


def check_applied(rel: str, found: FileRecord | None, planned: FileRecord) -> None:
    """StagedFileChanged unless the regular file applied at ``rel`` (``found``) has the planned digest."""
    if found is None or found.kind != "file" or found.digest != planned.digest:
        got = "nothing" if found is None else f"a {found.kind} hashing to {found.digest}"
        raise StagedFileChanged(
            f"/{rel}: the node now holds {got}, the plan recorded content {planned.digest}; "
            "the staged release changed after it was planned"
        )


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class NodeFS:
    """File operations confined to ``root`` (the node) with backups under ``backup_root`` (the state)."""

    def __init__(self, root: Path, backup_root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self._root = str(self.root)
        self.backup_root = backup_root
        # what an apply adds, recorded before it moves anything: a restore without a journal needs
        # it (the moved files are no longer in the staged tree); dropped with the backup
        self.added_path = backup_root.with_name(backup_root.name + ADDED_SUFFIX)

    # -- paths -------------------------------------------------------------------------------

    def node_path(self, rel: str) -> Path:
        """``root/rel``, refused unless its parent resolves inside the root (a symlinked directory on
        the node must not redirect a write elsewhere)."""
        return self._confined(rel, {})

    def node_paths(self, rels: Iterable[str]) -> dict[str, Path]:
        """:meth:`node_path` of each of ``rels``, each directory resolved once for all its files (a
        drift check or an apply of a thousand files in a few directories)."""
        resolved: dict[str, str] = {}
        return {rel: self._confined(rel, resolved) for rel in rels}

    def node_path_texts(self, rels: Iterable[str]) -> dict[str, str]:
        """:meth:`node_paths` as strings: for a pass that only ``lstat``s (a path object costs more)."""
        resolved: dict[str, str] = {}
        return {rel: self._confined_text(rel, resolved) for rel in rels}

    def record_reader(self) -> Callable[[str], FileRecord | None]:
        """:meth:`record` for one pass over many paths (a plan): each directory resolved once."""
        resolved: dict[str, str] = {}
        return lambda rel: record_of(self._confined(rel, resolved))

    def _confined(self, rel: str, resolved: dict[str, str]) -> Path:
        return Path(self._confined_text(rel, resolved))

    def _confined_text(self, rel: str, resolved: dict[str, str]) -> str:
        """``root/rel`` once its directory resolved inside the root (``resolved``: directory -> its
        real path, shared by one batch; strings, as paths cost more than the ``lstat``s here)."""
        check_relative(rel, "node path")
        directory, _, _name = rel.rpartition("/")
        parent = resolved.get(directory)
        if parent is None:
            parent = os.path.realpath(os.path.join(self._root, directory))
            if not _within(parent, self._root):
                raise UnsafePath(
                    f"/{rel}: its directory resolves to {parent}, outside the node root {self.root}; "
                    "refusing to write"
                )
            resolved[directory] = parent
        return os.path.join(self._root, rel)

    def backup_path(self, rel: str) -> Path:
        check_relative(rel, "backup path")
        return self.backup_root / rel

    def record(self, rel: str) -> FileRecord | None:
        return record_of(self.node_path(rel))

    # -- backup ------------------------------------------------------------------------------

    def backup(self, rel: str) -> None:
        """Keep the current inode of ``rel`` under the backup (hard link; copy across file systems)."""
        src = self.node_path(rel)
        dest = self.backup_path(rel)
        if os.path.lexists(dest) or not os.path.lexists(src):
            return
        ensure_dir(dest.parent)
        try:
            os.link(src, dest, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            tmp = dest.with_name(dest.name + NEW_SUFFIX)
            _copy_entry(src, tmp)
            os.replace(tmp, dest)
        fsync_dir(dest.parent)

    def restore(self, rel: str) -> None:
        """Put the backed-up inode back at ``rel`` (a rename); nothing to do if the backup is gone."""
        src = self.backup_path(rel)
        if not os.path.lexists(src):
            return
        dest = self.node_path(rel)
        ensure_dir(dest.parent)
        _move(src, dest)
        fsync_dir(dest.parent)

    def drop_backup(self) -> None:
        shutil.rmtree(self.backup_root, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.added_path)
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(self.backup_root.parent)

    def note_added(self, records: dict[str, FileRecord]) -> None:
        """Durably record the files an apply is about to add (path -> planned record)."""
        ensure_dir(self.added_path.parent)
        atomic_write_bytes(self.added_path, msgspec.json.encode(records), 0o600)

    def noted_added(self) -> dict[str, FileRecord]:
        """What :meth:`note_added` recorded; {} when nothing was (or it cannot be read)."""
        data = read_at_most(self.added_path, _MAX_ADDED_BYTES)
        if data is None or len(data) > _MAX_ADDED_BYTES:
            return {}
        try:
            return msgspec.json.decode(data, type=dict[str, FileRecord])
        except msgspec.DecodeError:
            log.warning("record of the files an apply added is unreadable",
                        extra={"path": str(self.added_path)})
            return {}

    # -- apply -------------------------------------------------------------------------------

    def make_dir(self, rel: str, mode: int, *, sync: bool = True) -> Path | None:
        """Make the directory ``rel``; returns its parent when it was made (``sync=False``: not
        fsynced, the caller's :meth:`sync_dirs` does it)."""
        path = self.node_path(rel)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            return None
        os.chmod(path, mode)
        if sync:
            fsync_dir(path.parent)
        return path.parent

    def apply(self, rel: str, staged: Path, expected: FileRecord | None = None) -> None:
        """Put the staged entry at ``rel`` (:meth:`put`), fsync its directory, and, with ``expected``
        (the planned record), check that what is on the node now hashes to its digest: what lands on
        the node is exactly what was planned (StagedFileChanged, for the caller to roll back, if not).
        """
        dest = self.node_path(rel)
        fsync_dir(self.put(rel, staged))
        if expected is not None and expected.kind == "file":
            check_applied(rel, record_of(dest), expected)

    def put(self, rel: str, staged: Path, resolved: dict[str, str] | None = None,
            moved: dict[str, os.stat_result] | None = None) -> Path:
        """Move the staged regular file or symlink to ``rel``, atomically replacing what is there
        (copied through ``<rel>.zu-new`` when the tree is on another file system). Returns the
        directory changed: the caller fsyncs it (once for all the files it put there).
        ``resolved``: one dict for a batch, so each directory is resolved once (``node_paths``);
        ``moved`` receives the ``lstat`` of ``rel`` right after the move."""
        dest = self._confined(rel, {} if resolved is None else resolved)
        kind = os.lstat(staged).st_mode
        if not stat.S_ISREG(kind) and not stat.S_ISLNK(kind):
            raise UnsafePath(f"{staged}: only regular files and symlinks are applied onto the node")
        _move(staged, dest)
        if moved is not None:
            moved[rel] = os.lstat(dest)
        return dest.parent

    @staticmethod
    def sync_dirs(dirs: set[Path]) -> None:
        """Make a batch's renames and unlinks durable: fsync each directory once, or, past a few
        directories, one ``syncfs`` per file system they are on (the same guarantee: a first install
        touches hundreds of directories, and each fsync is a journal commit)."""
        if len(dirs) <= _FSYNC_EACH_UP_TO:
            for path in sorted(dirs):
                fsync_dir(path)
            return
        from zos_upgrade.flist.durability import sync_file_system

        by_device: dict[int, Path] = {}
        for path in sorted(dirs):
            by_device.setdefault(os.stat(path).st_dev, path)
        for path in by_device.values():
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                synced = sync_file_system(fd)
            finally:
                os.close(fd)
            if not synced:  # no syncfs here: each directory, then
                for each in sorted(dirs):
                    fsync_dir(each)
                return

    def remove(self, rel: str, *, sync: bool = True) -> Path | None:
        """Unlink ``rel``; returns its directory when something went (``sync=False``: not fsynced,
        the caller's :meth:`sync_dirs` does it)."""
        path = self.node_path(rel)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return None
        if sync:
            fsync_dir(path.parent)
        return path.parent

    def remove_dir_if_empty(self, rel: str) -> None:
        path = self.node_path(rel)
        try:
            path.rmdir()
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                log.info("directory kept: not empty", extra={"path": "/" + rel})
                return
            raise
        fsync_dir(path.parent)

    def clear_temps(self, rels: list[str]) -> None:
        """Remove ``.zu-new`` leftovers of an interrupted apply or restore."""
        for rel in rels:
            path = self.node_path(rel)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(path.with_name(path.name + NEW_SUFFIX))


def _move(src: Path, dest: Path) -> None:
    """Rename ``src`` over ``dest``; across file systems, copy it to ``<dest>.zu-new`` (fsynced),
    rename that over ``dest`` and remove ``src``. The caller fsyncs ``dest``'s directory."""
    try:
        os.rename(src, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    tmp = dest.with_name(dest.name + NEW_SUFFIX)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover of an interrupted copy
    _copy_entry(src, tmp)
    os.replace(tmp, dest)
    os.unlink(src)


def copy_entry(src: Path, dest: Path) -> None:
    """Copy one regular file or symlink to the new name ``dest`` (content fsynced, mode kept)."""
    _copy_entry(src, dest)


def _copy_entry(src: Path, dest: Path) -> None:
    """Copy a regular file (content fsynced, mode and, as root, owner kept) or a symlink to ``dest``."""
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dest)
    elif stat.S_ISREG(st.st_mode):
        fd_out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(src, "rb") as fin, os.fdopen(fd_out, "wb") as fout:
                shutil.copyfileobj(fin, fout, _COPY_CHUNK)
                fout.flush()
                os.fchmod(fout.fileno(), stat.S_IMODE(st.st_mode))
                if os.geteuid() == 0:
                    os.fchown(fout.fileno(), st.st_uid, st.st_gid)
                os.fsync(fout.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            raise
    else:
        raise UnsafePath(f"{src}: only regular files and symlinks are copied onto the node")
    if os.geteuid() == 0 and stat.S_ISLNK(st.st_mode):
        os.lchown(dest, st.st_uid, st.st_gid)
