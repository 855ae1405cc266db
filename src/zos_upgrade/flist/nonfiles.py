"""The entries of a materialize that are not regular files: directories, symlinks, special files,
each created in place, relative to an open descriptor of its parent, as the walk meets it.

A directory is made 0700 (its mode and mtime come last, see ``durability``); a symlink's target is
data, never followed; a special file is made only when ``tree_checks.special_file_type`` allows it.
"""

from __future__ import annotations

import logging
import os

from zos_upgrade.flist.filewrite import DirFds
from zos_upgrade.flist.model import Entry, EntryKind, HostileFlist
from zos_upgrade.flist.report import MaterializeReport
from zos_upgrade.flist.tree_checks import TreeChecks, special_file_type

__all__ = ["NonFileMaker"]

log = logging.getLogger(__name__)


class NonFileMaker:
    """Creates the directories, symlinks and special files of one materialize under its destination."""

    def __init__(self, fds: DirFds, checks: TreeChecks, report: MaterializeReport, *, as_root: bool,
                 allow_devices: bool) -> None:
        self._fds = fds
        self._checks = checks
        self._report = report
        self._as_root = as_root
        self._allow_devices = allow_devices

    def create(self, entry: Entry, parts: list[str]) -> None:
        """Create ``entry`` (a checked entry, split into ``parts``), refusing a name that exists."""
        with self._fds.parent(parts) as pfd:
            try:
                self._create(entry, parts[-1], pfd)
            except FileExistsError as exc:
                raise HostileFlist(f"entry {entry.path!r} appears twice") from exc

    def _create(self, entry: Entry, name: str, pfd: int) -> None:
        mtime_ns = (entry.mtime * 1_000_000_000,) * 2
        report = self._report
        if entry.kind is EntryKind.DIR:
            os.mkdir(name, 0o700, dir_fd=pfd)
            self._apply_owner(entry, name, pfd)
            self._fds.remember(entry.path, pfd, name)
            self._checks.add_dir(entry)
            report.dirs += 1
        elif entry.kind is EntryKind.LINK:
            if not entry.target or "\0" in entry.target:
                raise HostileFlist(f"symlink {entry.path!r}: empty target or NUL byte in target")
            os.symlink(entry.target, name, dir_fd=pfd)
            self._apply_owner(entry, name, pfd)
            os.utime(name, ns=mtime_ns, dir_fd=pfd, follow_symlinks=False)
            self._checks.add_link(entry.path)
            report.links += 1
        elif entry.kind is EntryKind.SPECIAL:
            file_type = special_file_type(entry, self._allow_devices)
            if file_type is None:
                log.info("special file skipped", extra={"entry": entry.path, "mode": oct(entry.mode)})
                report.specials_skipped += 1
                return
            os.mknod(name, file_type | entry.permissions, entry.rdev, dir_fd=pfd)
            self._apply_owner(entry, name, pfd)
            os.chmod(name, entry.permissions, dir_fd=pfd)  # undo the umask; we just made it, not a link
            os.utime(name, ns=mtime_ns, dir_fd=pfd, follow_symlinks=False)
            report.specials += 1
        else:  # pragma: no cover - EntryKind is closed (regular files go to a FileWriter)
            raise HostileFlist(f"entry {entry.path!r}: unknown kind {entry.kind!r}")

    def _apply_owner(self, entry: Entry, name: str, pfd: int) -> None:
        if self._as_root:
            os.chown(name, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
        elif (entry.uid, entry.gid) != (os.geteuid(), os.getegid()):
            self._report.owners_skipped += 1
