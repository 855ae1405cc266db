"""The rules a materialize holds the tree to as its entries stream by, and the order of its last work:
pure bookkeeping, no I/O.

An entry's path must split into components that cannot leave the destination; its parent must be a
directory listed before it, and no symlink of the flist may lie on its way; no path may appear
twice (a regular file counts from the moment a writer takes it until it carries its final name;
after that the destination itself refuses a second one). What is left for the end, directory
modes and mtimes, is done deepest first.
"""

from __future__ import annotations

import stat

from zos_upgrade.flist.model import Entry, HostileFlist

__all__ = ["TreeChecks", "special_file_type", "split_path"]

_CREATED_SPECIALS = (stat.S_IFBLK, stat.S_IFCHR, stat.S_IFIFO)
_DEVICES = (stat.S_IFBLK, stat.S_IFCHR)


def split_path(path: str) -> list[str]:
    """The components of an absolute flist path, refusing anything that could leave the destination."""
    if not path.startswith("/") or "\0" in path:
        raise HostileFlist(f"entry path {path!r}: expected an absolute path without NUL bytes")
    parts = path[1:].split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise HostileFlist(f"entry path {path!r}: empty, '.' or '..' component")
    return parts


class TreeChecks:
    """What the walk has made so far (directories, links, files not named yet), and the rules an
    entry must pass against it before anything is created for it."""

    def __init__(self) -> None:
        self.dirs: set[str] = {"/"}
        self.links: set[str] = set()
        # files a writer has taken that do not carry their final name yet
        self.unnamed: set[str] = set()
        self._dirs_to_finish: list[Entry] = []

    def check(self, entry: Entry, parts: list[str]) -> None:
        """Refuse ``entry`` (split into ``parts``) when it goes through a link, has no directory
        listed before it as its parent, or names a path the tree already holds."""
        for depth in range(1, len(parts)):
            prefix = "/" + "/".join(parts[:depth])
            if prefix in self.links:
                raise HostileFlist(
                    f"entry {entry.path!r} goes through symlink {prefix!r}: refusing to write through a link"
                )
        parent = entry.parent
        if parent not in self.dirs:
            raise HostileFlist(
                f"entry {entry.path!r}: its parent {parent!r} is not a directory listed before it"
            )
        if entry.path in self.dirs or entry.path in self.links or entry.path in self.unnamed:
            raise HostileFlist(f"entry {entry.path!r} appears twice")

    def add_dir(self, entry: Entry) -> None:
        self.dirs.add(entry.path)
        self._dirs_to_finish.append(entry)

    def list_dir(self, entry: Entry) -> None:
        """``entry`` is a directory of the flist not made (yet): later entries may lie in it."""
        self.dirs.add(entry.path)

    def add_link(self, path: str) -> None:
        self.links.add(path)

    def file_started(self, path: str) -> None:
        self.unnamed.add(path)

    def file_named(self, path: str) -> None:
        """``path`` carries its final name now (called from the renaming thread: discard is atomic)."""
        self.unnamed.discard(path)

    def dirs_deepest_first(self) -> list[Entry]:
        """The directories made, deepest first (in walk order within one depth): finishing one never
        touches a directory finished before it."""
        return sorted(self._dirs_to_finish, key=lambda d: d.path.count("/"), reverse=True)


def special_file_type(entry: Entry, allow_devices: bool) -> int | None:
    """The file type to create for a special entry, or None to skip it: sockets always, block and
    character devices unless ``allow_devices``."""
    file_type = stat.S_IFMT(entry.mode)
    if file_type not in _CREATED_SPECIALS or (file_type in _DEVICES and not allow_devices):
        return None
    return file_type
