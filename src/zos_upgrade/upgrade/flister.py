"""Flister: an flist (hub fqdn or plain URL) -> a complete, verified tree under ``<state>/mounts/<md5>``.

The original mounted flists with a FUSE daemon; we materialize them instead, through the shared
content-addressed block cache (``<state>/cache/blocks``), so a release that shares blocks with the
installed one downloads only what the node lacks. A mount is built under a temporary name and renamed
to ``<md5>`` when complete: a directory named by an md5 is always a whole tree, and a crash leaves only
a temporary directory that :meth:`Flister.sweep` removes. The tree is never modified once renamed;
the upgrader copies from it (it is never the node's live copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from zos_upgrade import fsutil, net
from zos_upgrade.flist import BlockStore, Route, Router, open_flist, open_store
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.materialize import MaterializeReport, materialize
from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.publisher.base import HashMismatch
from zos_upgrade.publisher.signing import file_hash
from zos_upgrade.upgrade.errors import UpgradeError

__all__ = ["FetchUrl", "Flister", "Mount", "MountError"]

log = logging.getLogger(__name__)

FetchUrl = Callable[[str], Awaitable[bytes]]
_MAX_FLIST_BYTES = 256 * 1024 * 1024
_MD5_LEN = 32


class MountError(UpgradeError):
    """An flist could not be fetched or turned into a tree."""


@dataclass(frozen=True)
class Mount:
    path: Path                 # the tree (read it, never write it)
    md5: str                   # md5 of the flist file: the mount's name
    report: MaterializeReport  # what materializing cost (all zero when an existing mount was reused)
    flist: Path                # the flist file in <state>/flists


async def _default_fetch_url(url: str) -> bytes:
    async with httpx.AsyncClient(timeout=30.0, follow_redirects=True) as client:
        result = await net.fetch(client, url, max_bytes=_MAX_FLIST_BYTES)
    return result.body


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _make_writable(func: Callable[..., object], path: str, _exc: object) -> None:
    """rmtree helper: a tree may hold read-only directories (their mode comes from the flist)."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path), 0o700)
        func(path)


class Flister:
    """Fetch flists and turn them into trees under ``state_dir``; one instance per node."""

    def __init__(
        self,
        state_dir: Path,
        hub: HubClient | None,
        *,
        fetch_url: FetchUrl = _default_fetch_url,
        store_url: str | None = None,
        concurrency: int = 16,
        workers: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.mounts_dir = self.state_dir / "mounts"
        self.flists_dir = self.state_dir / "flists"
        self.cache = BlockCache(self.state_dir / "cache" / "blocks")
        self._hub = hub
        self._fetch_url = fetch_url
        self._store_url = store_url
        self._concurrency = concurrency
        self._workers = workers  # file-writer processes of materialize (None: automatic)

    async def mount(self, url_or_fqdn: str, *, expected_hash: str | None = None) -> Mount:
        """The tree of ``url_or_fqdn`` (``repo/name`` on the hub, or an http(s) URL).

        With ``expected_hash`` (publisher mode) the flist file must have that blake2b-256 or
        HashMismatch is raised before anything is materialized. An existing mount of the same md5 is
        reused.
        """
        flist = await self._download(url_or_fqdn)
        if expected_hash is not None:
            actual = await asyncio.to_thread(file_hash, flist)
            if actual != expected_hash:
                raise HashMismatch(
                    f"flist {url_or_fqdn}: downloaded file has blake2b-256 {actual}, "
                    f"the signed release pins {expected_hash}"
                )
        md5 = flist.name if len(flist.name) == _MD5_LEN else await asyncio.to_thread(_md5_file, flist)
        dest = self.mounts_dir / md5
        if _is_dir(dest):
            log.info("existing mount reused", extra={"flist": url_or_fqdn, "md5": md5})
            return Mount(dest, md5, MaterializeReport(), flist)
        self.mounts_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.mounts_dir / f".{md5}{fsutil.TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with open_flist(flist) as reader:
                store = self._store_for(reader.routes(), url_or_fqdn)
                try:
                    report = await materialize(
                        reader, tmp, store=store, cache=self.cache, concurrency=self._concurrency,
                        workers=self._workers,
                    )
                finally:
                    await store.aclose()
            os.rename(tmp, dest)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, tmp, False, _make_writable)
            raise
        fsutil.fsync_dir(self.mounts_dir)
        log.info("flist mounted", extra={"flist": url_or_fqdn, "md5": md5, "path": str(dest)})
        return Mount(dest, md5, report, flist)

    def umount(self, path: Path) -> None:
        """Remove a mount (only ever one of ours: a directory directly under ``<state>/mounts``)."""
        path = Path(path)
        if path.parent.resolve() != self.mounts_dir.resolve() or path.name.startswith("."):
            raise MountError(
                f"{path} is not a mount of this Flister (expected a directory in {self.mounts_dir})"
            )
        shutil.rmtree(path, onerror=_make_writable)

    def sweep(self) -> list[Path]:
        """Remove what a crash left half-built (temporary mounts and downloads); return what went."""
        removed: list[Path] = []
        folders = [self.mounts_dir, self.flists_dir]
        if self.cache.root.is_dir():
            # a block write cut by a kill leaves its temp file in the block's fan-out directory
            folders += [d for d in self.cache.root.iterdir() if d.is_dir() and not d.is_symlink()]
        for folder in folders:
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if fsutil.TEMP_MARK not in entry.name:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, onerror=_make_writable)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
        if removed:
            log.info("stale mounts swept", extra={"paths": [str(p) for p in removed]})
        return removed

    def prune(self, keep: set[str]) -> None:
        """Remove every complete mount whose md5 is not in ``keep`` (the installed releases)."""
        if not self.mounts_dir.is_dir():
            return
        for entry in self.mounts_dir.iterdir():
            if entry.name.startswith(".") or entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, onerror=_make_writable)

    # -- internals -------------------------------------------------------------------------------

    def _is_url(self, source: str) -> bool:
        return source.startswith(("http://", "https://"))

    def _store_for(self, routes: list[Route], source: str) -> BlockStore:
        """The stores the flist records, then ours (configured, or the hub's ``/blocks``) as a last resort.

        ``flist pack`` records where it wrote the blocks, which a node may not reach (a dir:// on the
        packing machine) while the hub serves the same blocks. Every block is checked against the
        flist whatever store it came from, so the extra source cannot change what is installed.
        """
        if not routes:
            return open_store(self._default_store(source))
        try:
            fallback = [Route(0, 255, self._default_store(source))]
        except MountError:
            fallback = []
        return Router([*routes, *fallback])

    def _default_store(self, source: str) -> str:
        """Where blocks live when the flist names no store: configured, else the hub's ``/blocks``."""
        if self._store_url:
            return self._store_url
        if self._hub is not None:
            return self._hub.base_url + "/blocks"
        if self._is_url(source):
            parts = urlsplit(source)
            return f"{parts.scheme}://{parts.netloc}/blocks"
        raise MountError(f"flist {source} names no block store and no hub or store URL is configured")

    async def _download(self, source: str) -> Path:
        self.flists_dir.mkdir(parents=True, exist_ok=True)
        if self._is_url(source):
            data = await self._fetch_url(source)
            md5 = hashlib.md5(data).hexdigest()
            path = self.flists_dir / md5
            if not path.is_file():
                await asyncio.to_thread(fsutil.atomic_write_bytes, path, data)
            return path
        if self._hub is None:
            raise MountError(f"flist {source!r} is not an http(s) URL and no hub is configured")
        split_fqdn(source)
        return await self._hub.download(source, self.flists_dir)


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
