"""Finding one stored flist by name, and its md5: the ``/light`` answer every node polls (SPEC 6).

A name is resolved from the link text read once, so target, size and md5 always describe the same
file even while a release engineer moves ``latest``; the md5 is computed once per file version.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zos_upgrade.hub.names import flist_filename, validate_name
from zos_upgrade.hubserver.storage.layout import FileChanged, NotInStorage, StorageLayout, clean_symlink

__all__ = ["FlistLookup", "StoredFlist"]

_MD5_CACHE_SIZE = 65536
_RESOLVE_TRIES = 5


@dataclass(frozen=True)
class StoredFlist:
    """An flist resolved in storage: ``path`` is the entry in the repo folder, ``real`` the file."""

    repo: str
    filename: str
    path: Path
    real: Path
    stat: os.stat_result  # of the real file
    link_target: str | None = None  # the link text when ``path`` is a symlink
    link_stat: os.stat_result | None = None

    def info(self, md5: str) -> dict[str, Any]:
        """The ``/light`` object, in the real hub's field order."""
        doc: dict[str, Any] = {
            "name": self.filename,
            "size": self.stat.st_size,
            "updated": int(self.stat.st_mtime),
            "type": "regular",
            "md5": md5,
        }
        if self.link_stat is not None:
            doc["type"] = "symlink"
            doc["linktime"] = int(self.link_stat.st_mtime)
            doc["target"] = self.link_target
        return doc


def _version_key(st: os.stat_result) -> tuple[int, ...]:
    """What identifies one version of a file: a rewrite or a replacement changes one of these."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FlistLookup:
    """Resolves names to stored flists and hashes them, with a cache of md5s. Thread-safe."""

    def __init__(self, layout: StorageLayout) -> None:
        self.layout = layout
        self._md5s: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, repo: str, name: str, *, tag: str | None = None) -> StoredFlist:
        """Find ``repo/name`` (or a member of ``repo``'s tag): raises :class:`NotInStorage`.

        The target file is found from the link text read once (never by resolving the link a second
        time), so target, size and md5 always describe the same file; a link replaced while it is
        read (its inode changes between the two ``lstat`` calls around ``readlink``) is read again
        so that ``linktime`` belongs to it too.
        """
        layout = self.layout
        folder = layout.tag_dir(repo, tag) if tag is not None else layout.repo_dir(repo)
        filename = flist_filename(name)
        path = folder / filename
        for attempt in range(1, _RESOLVE_TRIES + 1):
            try:
                st = layout.lstat(path)
            except FileNotFoundError:
                raise NotInStorage("source not found") from None
            if stat.S_ISREG(st.st_mode):
                return StoredFlist(repo, filename, path, path, st)
            if not stat.S_ISLNK(st.st_mode):
                raise NotInStorage("source not found")
            try:
                target, real = layout.follow(path)
                again = layout.lstat(path)
            except OSError:
                continue  # replaced by a file or removed in between: look again
            if (again.st_ino, again.st_mtime_ns) != (st.st_ino, st.st_mtime_ns) and attempt < _RESOLVE_TRIES:
                continue  # only ``linktime`` could be off: target, size and md5 all come from ``target``
            if real is None or not real.is_file():
                raise NotInStorage("source not found")
            try:
                return StoredFlist(repo, filename, path, real, layout.stat(real), target, st)
            except FileNotFoundError:
                continue
        raise FileChanged(f"{repo}/{filename} keeps changing while it is read")

    def known_md5(self, flist: StoredFlist) -> str | None:
        """The md5 if it was computed for this very file version already, else ``None``."""
        key = _version_key(flist.stat)
        with self._lock:
            known = self._md5s.get(key)
            if known is not None:
                self._md5s.move_to_end(key)
            return known

    def md5(self, flist: StoredFlist) -> str:
        """The md5 of the file version ``flist`` describes, computed once per (inode, size, mtime, ctime).

        Raises :class:`FileChanged` when the file was replaced since it was resolved, so an answer
        never pairs the size of one version with the md5 of another.
        """
        key = _version_key(flist.stat)
        known = self.known_md5(flist)
        if known is not None:
            return known
        digest = hashlib.md5()
        with flist.real.open("rb") as handle:
            if _version_key(os.fstat(handle.fileno())) != key:
                raise FileChanged(f"{flist.repo}/{flist.filename} changed while it was read")
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        value = digest.hexdigest()
        with self._lock:
            self._md5s[key] = value
            while len(self._md5s) > _MD5_CACHE_SIZE:
                self._md5s.popitem(last=False)
        return value

    def info(self, repo: str, name: str, *, tries: int = 3) -> dict[str, Any]:
        """The ``/light`` object of ``repo/name``; re-resolved if the file changes while hashed."""
        for _ in range(tries - 1):
            flist = self.resolve(repo, name)
            with contextlib.suppress(FileChanged):
                return flist.info(self.md5(flist))
        flist = self.resolve(repo, name)
        return flist.info(self.md5(flist))

    def taglink(self, repo: str, name: str) -> dict[str, str]:
        """``/api/flist/<repo>/<name>/taglink``: the cleaned target of an extension-less link."""
        validate_name(name, "taglink name")
        path = self.layout.repo_dir(repo) / name
        if not path.is_symlink():
            raise NotInStorage("source not found")
        return {"target": clean_symlink(os.readlink(path))}
