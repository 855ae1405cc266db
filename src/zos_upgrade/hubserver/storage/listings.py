"""The hub's listings (SPEC 6): repositories, every flist, a repository's entries, a tag's members.

A repository listing is the hot read of a big hub, so what a scan of a repo folder learned about its
regular files is kept while the folder's identity (inode, mtime, ctime) stays the same; links and
tags are re-read on every request, since their targets can move without the folder changing.
The dictionaries returned are the JSON objects of the real 0-hub, field order included.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zos_upgrade.hubserver.storage.layout import TAG_PREFIX, StorageLayout, clean_symlink

__all__ = ["RACY_SECONDS", "Listings"]

# a folder modified this close to a scan may change again within the file system's timestamp
# granularity without its mtime moving: such a scan is not cached (git's "racy" rule)
RACY_SECONDS = 2.0


def _kb(size: int) -> str:
    return "%.2f KB" % (size / 1024)  # the real hub's exact format


@dataclass
class _ScanCache:
    """What a scan of one repo folder learned about its regular files; valid while the folder is."""

    key: tuple[int, int, int]
    names: list[str]
    regular: dict[str, dict[str, Any]] = field(default_factory=dict)


class Listings:
    """The listing answers of one storage root, with the per-folder scan cache. Thread-safe."""

    def __init__(
        self,
        layout: StorageLayout,
        *,
        official: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = layout
        self.official = official
        self._clock = clock
        self._scans: dict[str, _ScanCache] = {}
        self._lock = threading.Lock()

    def forget(self, repo: str) -> None:
        """Drop the cached scan of ``repo``: our own write changed it (its mtime may not have moved)."""
        with self._lock:
            self._scans.pop(repo, None)

    def repositories(self) -> list[dict[str, Any]]:
        """``/api/repositories``: every repo folder, sorted."""
        root = self.layout.root
        out = []
        for name in sorted(os.listdir(root)):
            if name.startswith("."):
                continue
            path = root / name
            if not path.is_dir() or not self.layout.inside(path):
                continue
            try:
                updated = int(self.layout.lstat(path).st_mtime)
            except FileNotFoundError:
                continue
            out.append({"name": name, "official": name in self.official, "updated": updated})
        return out

    def all_flists(self) -> list[str]:
        """``/api/flist``: ``repo/entry`` for every visible entry of every repository."""
        return [
            f"{repo['name']}/{name}" for repo in self.repositories() for name in self._names(repo["name"])
        ]

    def _names(self, repo: str) -> list[str]:
        return self._scan(repo).names

    def fileslist(self) -> dict[str, list[dict[str, Any]]]:
        """``/api/fileslist``: every repository's listing."""
        return {repo["name"]: self.listing(repo["name"]) for repo in self.repositories()}

    def _scan(self, repo: str) -> _ScanCache:
        folder = self.layout.repo_dir(repo)
        st = self.layout.stat(folder)
        key = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            cached = self._scans.get(repo)
        if cached is not None and cached.key == key:
            return cached
        names = sorted(n for n in os.listdir(folder) if not n.startswith(".") or n.startswith(TAG_PREFIX))
        scan = _ScanCache(key, names)
        for name in names:
            try:
                entry_stat = self.layout.lstat(folder / name)
            except FileNotFoundError:
                continue  # removed while we listed: the folder's mtime moved, the next scan sees it
            if stat.S_ISREG(entry_stat.st_mode):
                scan.regular[name] = {
                    "name": name,
                    "size": _kb(entry_stat.st_size),
                    "updated": int(entry_stat.st_mtime),
                    "type": "regular",
                }
        if self._clock() - st.st_mtime >= RACY_SECONDS:
            with self._lock:
                self._scans[repo] = scan
        return scan

    def listing(self, repo: str) -> list[dict[str, Any]]:
        """``/api/flist/<repo>``: sorted; regular files from the scan cache, links and tags re-read."""
        scan = self._scan(repo)
        folder = self.layout.root / repo
        out: list[dict[str, Any]] = []
        for name in scan.names:
            cached = scan.regular.get(name)
            if cached is not None:
                out.append(cached)
                continue
            item = self._listing_item(folder, name)
            if item is not None:
                out.append(item)
        return out

    def _listing_item(self, folder: Path, name: str) -> dict[str, Any] | None:
        path = folder / name
        try:
            st = self.layout.lstat(path)
        except FileNotFoundError:
            return None  # removed since the scan
        if stat.S_ISLNK(st.st_mode):
            target, real = self.layout.follow(path)
            if real is None and not self.layout.inside(path.parent / target):
                return None  # never show what a link outside the root points at
            tst = self.layout.stat(real) if real is not None else st
            return {
                "name": name,
                "size": _kb(tst.st_size),
                "updated": int(tst.st_mtime),
                "linktime": int(st.st_mtime),
                "type": "taglink" if "/" + TAG_PREFIX in target else "symlink",
                "target": clean_symlink(target),
            }
        if stat.S_ISDIR(st.st_mode):
            if not name.startswith(TAG_PREFIX):
                return None
            return {
                "name": name[len(TAG_PREFIX) :],
                "size": "0 KB",
                "updated": int(st.st_mtime),
                "type": "tag",
            }
        if stat.S_ISREG(st.st_mode):
            return {"name": name, "size": _kb(st.st_size), "updated": int(st.st_mtime), "type": "regular"}
        return None

    def tag_listing(self, repo: str, tag: str) -> list[dict[str, Any]]:
        """``/api/flist/<repo>/tags/<tag>``: the tag's member links."""
        folder = self.layout.tag_dir(repo, tag)
        out = []
        for name in sorted(os.listdir(folder)):
            if name.startswith("."):
                continue
            item = self._listing_item(folder, name)
            if item is not None and item["type"] in ("symlink", "taglink"):
                item["type"] = "symlink"
                out.append(item)
        return out
