"""Every change to a hub's storage: uploads, links, tags, renames, deletes (SPEC 6 write API).

Writes are atomic (temp file + rename, a new symlink renamed over the old one) and durable (file and
folder fsynced), so a reader sees the old state or the new one, never a missing ``latest``; they are
serialized among themselves, and each tells the listings which repository it changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from zos_upgrade import fsutil
from zos_upgrade.hub.names import flist_filename, validate_name
from zos_upgrade.hubserver.storage.layout import TAG_PREFIX, Conflict, NotInStorage, StorageLayout
from zos_upgrade.hubserver.storage.lookup import FlistLookup

__all__ = ["StorageWrites"]

log = logging.getLogger(__name__)


class StorageWrites:
    """The write side of one storage root; ``changed(repo)`` is called after each change to ``repo``."""

    def __init__(
        self,
        layout: StorageLayout,
        lookup: FlistLookup,
        *,
        changed: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = layout
        self.lookup = lookup
        self._changed = changed
        self._clock = clock
        self._write_lock = threading.Lock()

    def sweep_temp_files(self, older_than: float = 600.0) -> int:
        """Remove upload/link temp files a crash left behind (old enough not to be in use)."""
        removed = 0
        now = self._clock()
        root = self.layout.root
        # hidden folders are not repositories (an archive upload's work folder is swept whole below)
        repos = (p for p in root.iterdir()
                 if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
        for folder in [root, *repos]:
            for path in folder.iterdir():
                if path.name.startswith(".") and fsutil.TEMP_MARK in path.name:
                    with contextlib.suppress(OSError):
                        st = path.lstat()
                        if now - st.st_mtime <= older_than:
                            continue
                        if stat.S_ISDIR(st.st_mode):
                            shutil.rmtree(path)  # an archive upload's work folder (never a link)
                        else:
                            path.unlink()
                        removed += 1
        return removed

    def _ensure_repo(self, repo: str) -> Path:
        validate_name(repo, "repository")
        path = self.layout.root / repo
        if not path.is_dir():
            with contextlib.suppress(FileExistsError):
                path.mkdir()
                fsutil.fsync_dir(self.layout.root)
        if not self.layout.inside(path) or not path.is_dir():
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
        self._changed(repo)
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
        source = self.lookup.resolve(repo, src)
        self._replace_link(self.layout.repo_dir(repo), flist_filename(link), source.filename)
        self._changed(repo)
        log.info("link moved", extra={"repo": repo, "link": link, "target": source.filename})

    def crosslink(self, repo: str, link: str, other: str, src: str) -> None:
        """``repo/link`` -> ``../other/src``."""
        source = self.lookup.resolve(other, src)
        folder = self._ensure_repo(repo)
        self._replace_link(folder, flist_filename(link), f"../{other}/{source.filename}")
        self._changed(repo)

    def crosstag(self, repo: str, link: str, other: str, tag: str) -> None:
        """``repo/link`` (no extension) -> ``../other/.tag-tag``."""
        validate_name(link, "taglink name")
        if link.endswith(".flist"):
            raise Conflict("tag symlink cannot ends with .flist")
        self.layout.tag_dir(other, tag)
        folder = self._ensure_repo(repo)
        if (folder / (link + ".flist")).exists():
            raise Conflict("there is a .flist file with the same name existing already")
        self._replace_link(folder, link, f"../{other}/{TAG_PREFIX}{tag}")
        self._changed(repo)

    def tag(self, repo: str, tag: str, link: str, other: str, src: str) -> None:
        """Add ``.tag-tag/link`` -> ``../../other/src`` to ``repo``."""
        validate_name(tag, "tag")
        source = self.lookup.resolve(other, src)
        folder = self._ensure_repo(repo) / (TAG_PREFIX + tag)
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            fsutil.fsync_dir(folder.parent)
        if folder.is_symlink() or not folder.is_dir():
            raise Conflict(f"tag {tag!r} of repository {repo!r} is not a plain folder: not written through")
        self._replace_link(folder, flist_filename(link), f"../../{other}/{source.filename}")
        self._changed(repo)

    def untag(self, repo: str, tag: str, link: str) -> None:
        """Remove ``link`` from ``repo``'s tag; the tag goes too when it was its last member."""
        folder = self.layout.tag_dir(repo, tag)
        path = folder / flist_filename(link)
        if not path.is_symlink():
            raise NotInStorage("target not found on this tag")
        with self._write_lock:
            path.unlink()
            fsutil.fsync_dir(folder)
            with contextlib.suppress(OSError):
                folder.rmdir()  # the last member gone: the tag goes too
                fsutil.fsync_dir(folder.parent)
        self._changed(repo)

    def rename(self, repo: str, src: str, dst: str) -> None:
        """Rename ``repo/src`` (a file or a link) to ``repo/dst``, which must not exist."""
        folder = self.layout.repo_dir(repo)
        source = folder / flist_filename(src)
        dest = folder / flist_filename(dst)
        if not (source.is_symlink() or source.is_file()):
            raise NotInStorage("source not found")
        with self._write_lock:
            if dest.exists() or dest.is_symlink():
                raise Conflict(f"{dest.name!r} exists already: delete it first")
            os.rename(source, dest)
            fsutil.fsync_dir(folder)
        self._changed(repo)

    def delete(self, repo: str, name: str) -> None:
        """Remove ``repo/name`` (a file or a link)."""
        folder = self.layout.repo_dir(repo)
        path = folder / flist_filename(name)
        if not (path.is_symlink() or path.is_file()):
            raise NotInStorage("source not found")
        with self._write_lock:
            path.unlink()
            fsutil.fsync_dir(folder)
        self._changed(repo)
        log.info("flist deleted", extra={"repo": repo, "flist": path.name})
