"""The hub's storage folder (SPEC 6): repositories, flists, symlinks, tags, taglinks.

Layout: ``<root>/<repo>/<name>.flist|.fl`` files; a symlink flist is a filesystem symlink in the
repo folder (``latest.flist -> app:1.2.3.flist`` or cross-repo ``../other/x.flist``); a tag is a
folder ``.tag-<tag>/`` of symlinks; a taglink an extension-less symlink to ``../<repo>/.tag-<tag>``.

Every name is validated (:mod:`zos_upgrade.hub.names`) before it becomes a path, and a symlink is
only ever followed when the file it resolves to lies inside the root: anything else is "not found".
Writes are atomic (temp file + rename, a new symlink renamed over the old one), so a reader sees
the old state or the new one, never a missing ``latest``.

The dictionaries this module returns are the JSON objects of the real 0-hub, field order included.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from zos_upgrade import fsutil
from zos_upgrade.hub.models import HubError
from zos_upgrade.hub.names import flist_filename, validate_name

__all__ = ["Conflict", "FileChanged", "HubStorage", "NotInStorage", "StoredFlist", "clean_symlink"]

log = logging.getLogger(__name__)

TAG_PREFIX = ".tag-"
# a folder modified this close to a scan may change again within the file system's timestamp
# granularity without its mtime moving: such a scan is not cached (git's "racy" rule)
RACY_SECONDS = 2.0
_MD5_CACHE_SIZE = 65536
_RESOLVE_TRIES = 5


class NotInStorage(HubError):
    """A repository, flist or tag does not exist (or resolves outside the root): HTTP 404."""


class FileChanged(HubError):
    """A file was replaced between resolving and reading it: resolve again (HTTP 503 if it keeps on)."""


class Conflict(HubError):
    """A write would destroy something it must not (a regular flist where a link goes): HTTP 409."""


def clean_symlink(target: str) -> str:
    """How the real hub shows a link target in listings: ``../`` removed, ``.tag-`` -> ``tags/``."""
    return target.replace("../", "").replace(TAG_PREFIX, "tags/")


def _kb(size: int) -> str:
    return "%.2f KB" % (size / 1024)  # the real hub's exact format


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


@dataclass
class _ScanCache:
    """What a scan of one repo folder learned about its regular files; valid while the folder is."""

    key: tuple[int, int, int]
    names: list[str]
    regular: dict[str, dict[str, Any]] = field(default_factory=dict)


class HubStorage:
    """One hub storage root. Thread-safe: reads run in worker threads, writes are serialized."""

    def __init__(
        self,
        root: Path,
        *,
        official: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise HubError(f"hub root {root} is not a directory")
        self.official = official
        self._clock = clock
        self._scans: dict[str, _ScanCache] = {}
        self._md5s: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.stat_calls = 0  # how many stat()s hit the disk: the listing cache is tested by it

    # ------------------------------------------------------------------ primitives

    def _lstat(self, path: Path | str) -> os.stat_result:
        self.stat_calls += 1
        return os.lstat(path)

    def _stat(self, path: Path | str) -> os.stat_result:
        self.stat_calls += 1
        return os.stat(path)

    def _inside(self, path: Path | str, *, resolved: bool = False) -> bool:
        real = str(path) if resolved else os.path.realpath(path)
        return real == str(self.root) or real.startswith(str(self.root) + os.sep)

    def repo_dir(self, repo: str) -> Path:
        """The folder of ``repo``; raises :class:`NotInStorage` ("user not found")."""
        validate_name(repo, "repository")
        path = self.root / repo
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise NotInStorage("user not found") from None
        # a real folder named by a validated name is inside the root; a symlinked one must resolve there
        if stat.S_ISDIR(mode) or (stat.S_ISLNK(mode) and path.is_dir() and self._inside(path)):
            return path
        raise NotInStorage("user not found")

    def _follow(self, link: Path) -> tuple[str, Path | None]:
        """Read a link and resolve it; ``None`` when it dangles or leaves the root."""
        target = os.readlink(link)
        # resolve the text we read, not the link again: it may have been moved in between
        real = Path(os.path.realpath(link.parent / target))
        if not self._inside(real, resolved=True):
            log.warning(
                "symlink leaves the hub root, not followed", extra={"link": str(link), "target": target}
            )
            return target, None
        if not real.exists():
            return target, None
        return target, real

    # ------------------------------------------------------------------ read side

    def repositories(self) -> list[dict[str, Any]]:
        """``/api/repositories``: every repo folder, sorted."""
        out = []
        for name in sorted(os.listdir(self.root)):
            if name.startswith("."):
                continue
            path = self.root / name
            if not path.is_dir() or not self._inside(path):
                continue
            try:
                updated = int(self._lstat(path).st_mtime)
            except FileNotFoundError:
                continue
            out.append({"name": name, "official": name in self.official, "updated": updated})
        return out

    def all_flists(self) -> list[str]:
        """``/api/flist``: ``repo/entry`` for every visible entry of every repository."""
        return [
            f"{repo['name']}/{name}" for repo in self.repositories() for name in self._names(repo["name"])
        ]

    def fileslist(self) -> dict[str, list[dict[str, Any]]]:
        """``/api/fileslist``: every repository's listing."""
        return {repo["name"]: self.listing(repo["name"]) for repo in self.repositories()}

    def _names(self, repo: str) -> list[str]:
        return self._scan(repo).names

    def _scan(self, repo: str) -> _ScanCache:
        folder = self.repo_dir(repo)
        st = self._stat(folder)
        key = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            cached = self._scans.get(repo)
        if cached is not None and cached.key == key:
            return cached
        names = sorted(n for n in os.listdir(folder) if not n.startswith(".") or n.startswith(TAG_PREFIX))
        scan = _ScanCache(key, names)
        for name in names:
            try:
                entry_stat = self._lstat(folder / name)
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
        folder = self.root / repo
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
            st = self._lstat(path)
        except FileNotFoundError:
            return None  # removed since the scan
        if stat.S_ISLNK(st.st_mode):
            target, real = self._follow(path)
            if real is None and not self._inside(path.parent / target):
                return None  # never show what a link outside the root points at
            tst = self._stat(real) if real is not None else st
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

    def tag_dir(self, repo: str, tag: str) -> Path:
        validate_name(tag, "tag")
        path = self.repo_dir(repo) / (TAG_PREFIX + tag)
        if not path.is_dir() or path.is_symlink():
            raise NotInStorage(f"tag {tag!r} not found in repository {repo!r}")
        return path

    def tag_listing(self, repo: str, tag: str) -> list[dict[str, Any]]:
        """``/api/flist/<repo>/tags/<tag>``: the tag's member links."""
        folder = self.tag_dir(repo, tag)
        out = []
        for name in sorted(os.listdir(folder)):
            if name.startswith("."):
                continue
            item = self._listing_item(folder, name)
            if item is not None and item["type"] in ("symlink", "taglink"):
                item["type"] = "symlink"
                out.append(item)
        return out

    def resolve(self, repo: str, name: str, *, tag: str | None = None) -> StoredFlist:
        """Find ``repo/name`` (or a member of ``repo``'s tag): raises :class:`NotInStorage`.

        The target file is found from the link text read once (never by resolving the link a second
        time), so target, size and md5 always describe the same file; a link replaced while it is
        read (its inode changes between the two ``lstat`` calls around ``readlink``) is read again
        so that ``linktime`` belongs to it too.
        """
        folder = self.tag_dir(repo, tag) if tag is not None else self.repo_dir(repo)
        filename = flist_filename(name)
        path = folder / filename
        for attempt in range(1, _RESOLVE_TRIES + 1):
            try:
                st = self._lstat(path)
            except FileNotFoundError:
                raise NotInStorage("source not found") from None
            if stat.S_ISREG(st.st_mode):
                return StoredFlist(repo, filename, path, path, st)
            if not stat.S_ISLNK(st.st_mode):
                raise NotInStorage("source not found")
            try:
                target, real = self._follow(path)
                again = self._lstat(path)
            except OSError:
                continue  # replaced by a file or removed in between: look again
            if (again.st_ino, again.st_mtime_ns) != (st.st_ino, st.st_mtime_ns) and attempt < _RESOLVE_TRIES:
                continue  # only ``linktime`` could be off: target, size and md5 all come from ``target``
            if real is None or not real.is_file():
                raise NotInStorage("source not found")
            try:
                return StoredFlist(repo, filename, path, real, self._stat(real), target, st)
            except FileNotFoundError:
                continue
        raise FileChanged(f"{repo}/{filename} keeps changing while it is read")

    @staticmethod
    def _md5_key(flist: StoredFlist) -> tuple[int, ...]:
        st = flist.stat
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def known_md5(self, flist: StoredFlist) -> str | None:
        """The md5 if it was computed for this very file version already, else ``None``."""
        key = self._md5_key(flist)
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
        key = self._md5_key(flist)
        known = self.known_md5(flist)
        if known is not None:
            return known
        digest = hashlib.md5()
        with flist.real.open("rb") as handle:
            st = os.fstat(handle.fileno())
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) != key:
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
        path = self.repo_dir(repo) / name
        if not path.is_symlink():
            raise NotInStorage("source not found")
        return {"target": clean_symlink(os.readlink(path))}

    # ------------------------------------------------------------------ write side

    def sweep_temp_files(self, older_than: float = 600.0) -> int:
        """Remove upload/link temp files a crash left behind (old enough not to be in use)."""
        removed = 0
        now = self._clock()
        for folder in [self.root, *(p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink())]:
            for path in folder.iterdir():
                if path.name.startswith(".") and fsutil.TEMP_MARK in path.name:
                    with contextlib.suppress(OSError):
                        if now - path.lstat().st_mtime > older_than:
                            path.unlink()
                            removed += 1
        return removed

    def _forget(self, repo: str) -> None:
        with self._lock:
            self._scans.pop(repo, None)

    def _ensure_repo(self, repo: str) -> Path:
        validate_name(repo, "repository")
        path = self.root / repo
        if not path.is_dir():
            with contextlib.suppress(FileExistsError):
                path.mkdir()
                fsutil.fsync_dir(self.root)
        if not self._inside(path) or not path.is_dir():
            raise Conflict(f"repository {repo!r} is not a folder inside the hub root")
        return path

    @contextlib.contextmanager
    def upload_target(self, repo: str, name: str) -> Iterator[tuple[Path, BinaryIO]]:
        """A temp file in the repo folder; the caller writes and checks it, then calls :meth:`commit`.

        The temp file is removed if the block raises or the caller did not commit it.
        """
        filename = flist_filename(name)
        folder = self._ensure_repo(repo)
        tmp = fsutil.temp_sibling(folder / filename)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield tmp, handle
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def commit(self, tmp: Path, repo: str, name: str) -> str:
        """Durably move an uploaded temp file to ``repo/name`` (replacing it atomically)."""
        filename = flist_filename(name)
        folder = self._ensure_repo(repo)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        with self._write_lock:
            os.replace(tmp, folder / filename)
            fsutil.fsync_dir(folder)
        self._forget(repo)
        log.info("flist stored", extra={"repo": repo, "flist": filename})
        return filename

    def _replace_link(self, folder: Path, link_name: str, target: str) -> None:
        path = folder / link_name
        with self._write_lock:
            if path.exists() and not path.is_symlink():
                raise Conflict(f"{link_name!r} is already a regular file or folder: only links are replaced")
            fsutil.atomic_symlink(target, path)

    def link(self, repo: str, src: str, link: str) -> None:
        """``repo/link`` -> ``repo/src``."""
        source = self.resolve(repo, src)
        self._replace_link(self.repo_dir(repo), flist_filename(link), source.filename)
        self._forget(repo)
        log.info("link moved", extra={"repo": repo, "link": link, "target": source.filename})

    def crosslink(self, repo: str, link: str, other: str, src: str) -> None:
        """``repo/link`` -> ``../other/src``."""
        source = self.resolve(other, src)
        folder = self._ensure_repo(repo)
        self._replace_link(folder, flist_filename(link), f"../{other}/{source.filename}")
        self._forget(repo)

    def crosstag(self, repo: str, link: str, other: str, tag: str) -> None:
        """``repo/link`` (no extension) -> ``../other/.tag-tag``."""
        validate_name(link, "taglink name")
        if link.endswith(".flist"):
            raise Conflict("tag symlink cannot ends with .flist")
        self.tag_dir(other, tag)
        folder = self._ensure_repo(repo)
        if (folder / (link + ".flist")).exists():
            raise Conflict("there is a .flist file with the same name existing already")
        self._replace_link(folder, link, f"../{other}/{TAG_PREFIX}{tag}")
        self._forget(repo)

    def tag(self, repo: str, tag: str, link: str, other: str, src: str) -> None:
        """Add ``.tag-tag/link`` -> ``../../other/src`` to ``repo``."""
        validate_name(tag, "tag")
        source = self.resolve(other, src)
        folder = self._ensure_repo(repo) / (TAG_PREFIX + tag)
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            fsutil.fsync_dir(folder.parent)
        if folder.is_symlink() or not folder.is_dir():
            raise Conflict(f"tag {tag!r} of repository {repo!r} is not a plain folder: not written through")
        self._replace_link(folder, flist_filename(link), f"../../{other}/{source.filename}")
        self._forget(repo)

    def untag(self, repo: str, tag: str, link: str) -> None:
        folder = self.tag_dir(repo, tag)
        path = folder / flist_filename(link)
        if not path.is_symlink():
            raise NotInStorage("target not found on this tag")
        with self._write_lock:
            path.unlink()
            fsutil.fsync_dir(folder)
            with contextlib.suppress(OSError):
                folder.rmdir()  # the last member gone: the tag goes too
                fsutil.fsync_dir(folder.parent)
        self._forget(repo)

    def rename(self, repo: str, src: str, dst: str) -> None:
        folder = self.repo_dir(repo)
        source = folder / flist_filename(src)
        dest = folder / flist_filename(dst)
        if not (source.is_symlink() or source.is_file()):
            raise NotInStorage("source not found")
        with self._write_lock:
            if dest.exists() or dest.is_symlink():
                raise Conflict(f"{dest.name!r} exists already: delete it first")
            os.rename(source, dest)
            fsutil.fsync_dir(folder)
        self._forget(repo)

    def delete(self, repo: str, name: str) -> None:
        folder = self.repo_dir(repo)
        path = folder / flist_filename(name)
        if not (path.is_symlink() or path.is_file()):
            raise NotInStorage("source not found")
        with self._write_lock:
            path.unlink()
            fsutil.fsync_dir(folder)
        self._forget(repo)
        log.info("flist deleted", extra={"repo": repo, "flist": path.name})
