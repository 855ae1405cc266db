"""Flist deltas the hub offers (issue 19): made on demand, kept under ``<root>/.delta``, bounded.

A node that holds an older flist of the same repository (named by its md5) asks for the delta from
it to the new one. The base is found among the repository's stored flists by md5; the delta
(:mod:`zos_upgrade.flist.delta`) is made once, kept as ``<base md5>-<target md5>``, and served from
there. When no delta can be made (no such base, a gzip the recipe does not reproduce, a delta no
smaller than the file) a ``.none`` marker remembers it, so the hub does not try again. At most
``max_entries`` files are kept (the oldest go first); nothing is written outside the hub root.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import threading
from pathlib import Path

from zos_upgrade import fsutil
from zos_upgrade.flist.delta import DeltaInvalid, make_delta
from zos_upgrade.hub.names import FLIST_SUFFIXES
from zos_upgrade.hubserver.storage import FileChanged, HubStorage, NotInStorage, StoredFlist

__all__ = ["DeltaCache"]

log = logging.getLogger(__name__)

_FOLDER = ".delta"
_NONE = ".none"


class DeltaCache:
    """Deltas between a repository's stored flists, made once and kept (bounded) under the root."""

    def __init__(self, storage: HubStorage, max_bytes: int, max_entries: int = 256) -> None:
        self.storage = storage
        self.folder = storage.root / _FOLDER
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        # one delta made at a time: a burst of nodes asking for new pairs costs one core, not all
        self._making = threading.Lock()

    def find_base(self, repo: str, md5s: list[str], like: StoredFlist) -> StoredFlist | None:
        """The first of ``md5s`` that is a stored flist of ``repo`` with ``like``'s format."""
        folder = self.storage.repo_dir(repo)
        suffix = next(s for s in FLIST_SUFFIXES if like.filename.endswith(s))
        wanted = set(md5s)
        found: dict[str, StoredFlist] = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if entry.name.startswith(".") or not entry.name.endswith(suffix) or not entry.is_file(
                        follow_symlinks=False):
                    continue
                with contextlib.suppress(NotInStorage, FileChanged, OSError):
                    flist = self.storage.resolve(repo, entry.name)
                    md5 = self.storage.md5(flist)
                    if md5 in wanted:
                        found.setdefault(md5, flist)
        return next((found[m] for m in md5s if m in found), None)

    def delta(self, base: StoredFlist, base_md5: str, target: StoredFlist, target_md5: str) -> Path | None:
        """The kept delta file from ``base`` to ``target`` (made now if needed), or None."""
        if base_md5 == target_md5:
            return None
        name = f"{base_md5}-{target_md5}"
        path = self.folder / name
        self._check_folder()
        if path.is_file():
            return path
        if (self.folder / (name + _NONE)).is_file():
            return None
        with self._making:
            if path.is_file():
                return path
            made = self._make(base, base_md5, target, target_md5)
            with contextlib.suppress(FileExistsError):
                self.folder.mkdir()
            self._check_folder()
            fsutil.atomic_write_bytes(path if made is not None else self.folder / (name + _NONE), made or b"")
            self._trim()
        log.info("flist delta made", extra={"base": base_md5, "target": target_md5,
                                            "bytes": len(made) if made is not None else None,
                                            "whole": target.stat.st_size})
        return path if made is not None else None

    def _check_folder(self) -> None:
        """Refuse a ``.delta`` that is not a plain folder (a symlink would lead outside the root)."""
        try:
            mode = os.lstat(self.folder).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(mode):
            raise OSError(f"{self.folder} is not a plain folder (a symlink?): no delta read or kept there")

    def _make(self, base: StoredFlist, base_md5: str, target: StoredFlist, target_md5: str) -> bytes | None:
        old = fsutil.read_at_most(base.real, self.max_bytes)
        new = fsutil.read_at_most(target.real, self.max_bytes)
        if old is None or new is None or max(len(old), len(new)) > self.max_bytes:
            return None  # gone, or larger than any node takes: it downloads whole
        if hashlib.md5(old).hexdigest() != base_md5 or hashlib.md5(new).hexdigest() != target_md5:
            raise FileChanged(f"{target.repo}/{target.filename} or its base changed while read")
        try:
            made = make_delta(old, new, self.max_bytes)
        except DeltaInvalid as exc:
            log.warning("no flist delta: unreadable payload",
                        extra={"target": target_md5, "reason": str(exc)})
            return None
        if made is None or len(made) >= len(new):
            return None
        return made

    def _trim(self) -> None:
        entries = sorted(self.folder.iterdir(), key=lambda p: p.lstat().st_mtime_ns)
        for old in entries[:max(0, len(entries) - self.max_entries)]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
