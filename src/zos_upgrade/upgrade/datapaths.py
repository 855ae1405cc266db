"""Data paths: node paths a release's hooks may change, saved before the first hook, restored on rollback.

The transaction rolls back the release's own files by itself (backup + rename). A hook can change
more than that — a ``migrate`` hook converting a database in place — and without help those changes
would survive a rollback: old binaries meeting migrated data, a half-upgraded node. So a release
declares what its hooks may touch, and the upgrader makes those paths part of the transaction.

**The contract for release engineers.** A file ``hooks.paths`` at the flist root (like the hooks, it
is never copied onto the node) lists one absolute node path per line, a file or a directory; blank
lines and lines starting with ``#`` are ignored::

    # the database migrate converts, and the config post-copy rewrites
    /var/lib/app/db
    /etc/app/local.conf

Each entry must be absolute and normalised (no ``.``, ``..``, ``//`` or trailing ``/``), not ``/``
itself, free of control characters, not inside (nor holding) the upgrader's state directory, not
equal to nor holding a path the release or another installed release ships (those are already rolled
back), not nested in another entry, at most :data:`MAX_DATA_PATHS` entries. Its parent must resolve
inside the node root (no symlinked escape), and a declared directory may hold only directories,
regular files and symlinks. A hostile or malformed file refuses the whole release at plan time,
before any hook runs. Paths a hook changes but does not declare are NOT rolled back.

**What the upgrader does.** Before the first hook runs, it saves a full COPY of each declared path
that exists (hooks modify in place, so a hard link would share the changed inode) into
``<state>/backup/data/``, every file and directory fsynced, and records in the journal which paths it
saved and which did not exist. On rollback (a failure, or a crash found at start-up) each saved
copy is renamed back over the node path and each path that did not exist is removed, together with
the directories the hooks created above it when they are empty again; every step is idempotent, so a
crash during rollback is finished by the next recovery. On commit the copies are dropped. Copies take
space and time in proportion to the declared data: declare what the hooks change, not whole trees.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import stat
from collections.abc import Collection, Iterable
from pathlib import Path

import msgspec

from zos_upgrade.fsutil import fsync_dir
from zos_upgrade.upgrade.dirs import ensure_dir
from zos_upgrade.upgrade.errors import PlanRefused, UnsafePath
from zos_upgrade.upgrade.nodefs import NodeFS, copy_entry

__all__ = [
    "DATA_PATHS_FILE",
    "MAX_DATA_PATHS",
    "DataPaths",
    "SavedPath",
    "parse_data_paths",
    "read_data_paths",
]

DATA_PATHS_FILE = "hooks.paths"
MAX_DATA_PATHS = 64
_MAX_FILE_BYTES = 64 * 1024
_MAX_PATH_CHARS = 4096
# name marks of the rollback's own temporaries next to a node path (swept by the stray-file checks)
_INCOMING = ".zu-new"
_OUTGOING = ".zu-new-old"


class SavedPath(msgspec.Struct, forbid_unknown_fields=True, array_like=True):
    """One declared path as it was before the first hook (recorded in the journal)."""

    path: str                  # relative to the node root
    existed: bool              # False: rollback removes whatever the hooks created there
    created_parents: list[str]  # missing ancestors (deepest first), removed on rollback when empty


def _inside(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor + "/")


def parse_data_paths(
    text: str,
    *,
    where: str,
    state_rel: str | None = None,
    owned: Collection[str] = (),
    max_paths: int = MAX_DATA_PATHS,
) -> list[str]:
    """Validate a ``hooks.paths`` text; return the declared paths relative to the node root.

    ``state_rel``: the state directory relative to the node root (None when it lies outside).
    ``owned``: every path (relative) a release ships or another installed release owns.
    Raises PlanRefused naming the line, the entry and what was expected.
    """
    paths: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t")
        if not line or line.startswith("#"):
            continue
        at = f"{where} line {number}"
        shown = line[:200]
        if len(line) > _MAX_PATH_CHARS:
            raise PlanRefused(f"{at}: path longer than {_MAX_PATH_CHARS} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in line):
            raise PlanRefused(f"{at}: {shown!r} contains control characters or NUL; expected a plain path")
        if not line.startswith("/"):
            raise PlanRefused(f"{at}: {shown!r} is not absolute; expected a node path such as /var/lib/app")
        if ".." in line.split("/"):
            raise PlanRefused(f"{at}: {shown!r} contains '..'; expected a normalised absolute path")
        if line == "/":
            raise PlanRefused(f"{at}: '/' is the whole node; declare the paths the hooks change")
        if posixpath.normpath(line) != line or line.startswith("//"):
            raise PlanRefused(
                f"{at}: {shown!r} is not normalised (expected {posixpath.normpath(line)!r}: "
                "no '.', '//' or trailing '/')"
            )
        rel = line[1:]
        if state_rel is not None and (_inside(rel, state_rel) or _inside(state_rel, rel)):
            raise PlanRefused(
                f"{at}: {line} overlaps the upgrader's state directory /{state_rel}; hooks may not "
                "change the transaction's own records"
            )
        for other in paths:
            if _inside(rel, other) or _inside(other, rel):
                raise PlanRefused(f"{at}: {line} overlaps /{other}, declared before; declare each path once")
        clash = next((o for o in owned if _inside(o, rel)), None)
        if clash is not None:
            raise PlanRefused(
                f"{at}: {line} holds /{clash}, a file of the release or of an installed release; "
                "release files are rolled back already: declare only data outside them"
            )
        paths.append(rel)
        if len(paths) > max_paths:
            raise PlanRefused(f"{where}: more than {max_paths} paths declared; expected at most {max_paths}")
    return paths


def read_data_paths(
    tree: Path,
    *,
    state_rel: str | None = None,
    owned: Collection[str] = (),
    max_paths: int = MAX_DATA_PATHS,
) -> list[str]:
    """``parse_data_paths`` of ``<tree>/hooks.paths``; [] when the release has none."""
    path = tree / DATA_PATHS_FILE
    where = f"release file /{DATA_PATHS_FILE}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return []
    if not stat.S_ISREG(st.st_mode):
        raise PlanRefused(f"{where}: expected a regular file (symlinks and directories are refused)")
    if st.st_size > _MAX_FILE_BYTES:
        raise PlanRefused(f"{where}: {st.st_size} bytes; expected at most {_MAX_FILE_BYTES}")
    try:
        text = path.read_bytes()[:_MAX_FILE_BYTES].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanRefused(f"{where}: not UTF-8 text ({exc})") from None
    return parse_data_paths(text, where=where, state_rel=state_rel, owned=owned, max_paths=max_paths)


def state_relative(root: Path, state_dir: Path) -> str | None:
    """The state directory relative to the node root, or None when it lies outside the root."""
    real_root = os.path.realpath(root)
    real_state = os.path.realpath(state_dir)
    if real_state == real_root:
        return ""
    if real_state.startswith(real_root.rstrip("/") + "/"):
        return os.path.relpath(real_state, real_root)
    return None


class DataPaths:
    """Saves declared node paths into ``save_root`` and puts them back; every step idempotent."""

    def __init__(self, files: NodeFS, save_root: Path, state_dir: Path) -> None:
        self.files = files
        self.save_root = save_root
        self._state_real = os.path.realpath(state_dir)

    def saved_path(self, rel: str) -> Path:
        return self.save_root / rel

    def check(self, rel: str) -> Path:
        """The node path of ``rel``; refused when its directory resolves outside the root or into the state"""
        path = self.files.node_path(rel)
        parent = os.path.realpath(path.parent)
        if parent == self._state_real or parent.startswith(self._state_real + "/"):
            raise UnsafePath(f"/{rel}: its directory resolves into the state directory {self._state_real}")
        return path

    # -- save --------------------------------------------------------------------------------

    def save_all(self, rels: Iterable[str]) -> list[SavedPath]:
        """Copy every declared path that exists, durably; what to record in the journal."""
        return [self.save(rel) for rel in rels]

    def save(self, rel: str) -> SavedPath:
        node = self.check(rel)
        dest = self.saved_path(rel)
        _remove_any(dest)  # a partial copy of an attempt that crashed before the journal recorded it
        if not os.path.lexists(node):
            return SavedPath(rel, False, _missing_parents(self.files, rel))
        ensure_dir(dest.parent)
        _copy_tree(node, dest)
        fsync_dir(dest.parent)
        return SavedPath(rel, True, [])

    # -- restore -----------------------------------------------------------------------------

    def restore_all(self, saved: Iterable[SavedPath]) -> None:
        for entry in saved:
            self.restore(entry)

    def restore(self, entry: SavedPath) -> None:
        """Put ``entry`` back as it was before the hooks; repeating it after a crash is harmless."""
        node = self.files.node_path(entry.path)
        incoming = node.with_name(node.name + _INCOMING)
        outgoing = node.with_name(node.name + _OUTGOING)
        if not entry.existed:
            _remove_any(incoming)
            _remove_any(outgoing)
            _remove_any(node)
            for parent in entry.created_parents:
                self.files.remove_dir_if_empty(parent)
            return
        saved = self.saved_path(entry.path)
        if os.path.lexists(saved):
            # bring the copy next to the node path (a rename; a copy when the state is elsewhere)
            _remove_any(incoming)
            ensure_dir(node.parent)
            try:
                os.rename(saved, incoming)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                _copy_tree(saved, incoming)
            fsync_dir(node.parent)
        if os.path.lexists(incoming):
            if os.path.lexists(node):
                _remove_any(outgoing)
                os.rename(node, outgoing)
            os.rename(incoming, node)
            fsync_dir(node.parent)
        _remove_any(outgoing)
        _remove_any(saved)

    def drop(self) -> None:
        """Forget every saved copy (commit, or a finished rollback)."""
        _remove_any(self.save_root)


def _missing_parents(files: NodeFS, rel: str) -> list[str]:
    missing: list[str] = []
    parent = posixpath.dirname(rel)
    while parent and not os.path.lexists(files.root / parent):
        missing.append(parent)
        parent = posixpath.dirname(parent)
    return missing


def _remove_any(path: Path) -> None:
    """Remove a file, symlink or whole directory; absent is fine. The parent is fsynced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    with contextlib.suppress(FileNotFoundError):
        fsync_dir(path.parent)


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy a file, symlink or directory tree (modes, owners as root, times kept; all fsynced).

    Anything but directories, regular files and symlinks is refused: copying a FIFO would block and a
    device is not data.
    """
    st = os.lstat(src)
    if not stat.S_ISDIR(st.st_mode):
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise UnsafePath(f"{src}: a declared data path may hold only directories, files and symlinks")
        copy_entry(src, dest)
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    # iterative, so a deep tree cannot exhaust Python's recursion limit
    pending: list[tuple[Path, Path]] = [(src, dest)]
    made: list[tuple[Path, os.stat_result]] = []
    while pending:
        source, target = pending.pop()
        dst = os.lstat(source)
        os.mkdir(target, 0o700)
        made.append((target, dst))
        for name in sorted(os.listdir(source)):
            child, child_target = source / name, target / name
            cst = os.lstat(child)
            if stat.S_ISDIR(cst.st_mode):
                pending.append((child, child_target))
            elif stat.S_ISREG(cst.st_mode) or stat.S_ISLNK(cst.st_mode):
                copy_entry(child, child_target)
                os.utime(child_target, ns=(cst.st_atime_ns, cst.st_mtime_ns), follow_symlinks=False)
            else:
                raise UnsafePath(
                    f"{child}: a declared data path may hold only directories, files and symlinks"
                )
    # modes, owners and times of directories last (a read-only directory must be filled first)
    for target, dst in reversed(made):
        fsync_dir(target)
        if os.geteuid() == 0:
            os.chown(target, dst.st_uid, dst.st_gid)
        os.chmod(target, stat.S_IMODE(dst.st_mode))
        os.utime(target, ns=(dst.st_atime_ns, dst.st_mtime_ns))
