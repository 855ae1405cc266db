"""A release server as a release source: a signed release object -> its flist file, checked by hash.

The publisher layer (``TrustedKeys.verify``) already checked the release object's signature; what
is left is the flist file it names: fetched (size-limited), its blake2b-256 compared with the
signed ``hash`` while still in memory, and only then written under its md5 name.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from zos_upgrade import fsutil, net
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.hub.models import HubError
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.node.events import ReleaseEvent
from zos_upgrade.publisher.base import HashMismatch
from zos_upgrade.publisher.signing import check_flist
from zos_upgrade.sources.base import (
    FetchFailed,
    Target,
    UnusableRelease,
    VerificationFailed,
    VerifiedRelease,
)

__all__ = ["FetchUrl", "PublisherSource", "fetch_flist_url", "fqdn_of_url", "keep_flist"]

FetchUrl = Callable[[str], Awaitable[bytes]]


async def fetch_flist_url(url: str) -> bytes:
    """GET ``url`` with a timeout and a size limit (the default way to fetch a release's flist)."""
    async with httpx.AsyncClient(timeout=30.0, follow_redirects=True) as client:
        result = await net.fetch(client, url, max_bytes=net.MAX_FLIST_BYTES)
    return result.body


class PublisherSource:
    """Turns a :class:`ReleaseEvent` (a signed release object) into a VerifiedRelease."""

    def __init__(self, downloads: Path, *, fetch_url: FetchUrl = fetch_flist_url) -> None:
        self.downloads = Path(downloads)
        self._fetch_url = fetch_url

    async def verify(self, candidate: ReleaseEvent, target: Target) -> VerifiedRelease:
        release, version = candidate.upgrade, str(candidate.version)
        if not release.hash:
            raise UnusableRelease(
                f"release {version} pins no flist hash (its release object must carry the blake2b-256 "
                f"of {release.flist})"
            )
        fqdn = fqdn_of_url(release.flist)
        try:
            data = await self._fetch_url(release.flist)
        except (ZosUpgradeError, OSError) as exc:
            raise FetchFailed(
                f"release {version}: flist {release.flist} could not be fetched: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            check_flist(release, data, f"release {version}")
        except HashMismatch as exc:
            raise VerificationFailed(f"{type(exc).__name__}: {exc}") from exc
        path, md5 = await keep_flist(self.downloads, data, f"release {version}: flist {release.flist}")
        parts = urlsplit(release.flist)
        info = {"type": "regular", "updated": int(time.time()), "md5": "", "name": fqdn.split("/")[1],
                "target": None}
        return VerifiedRelease(
            target=target, fqdn=fqdn, version=version, source=release.flist, flist=path, md5=md5,
            verified_by="ed25519-signed blake2b-256", info=info,
            block_store=f"{parts.scheme}://{parts.netloc}/blocks",
        )



async def keep_flist(downloads: Path, data: bytes, what: str) -> tuple[Path, str]:
    """Store checked flist bytes durably as ``downloads/<md5>`` (the sources' naming rule): (path, md5)."""
    md5 = hashlib.md5(data).hexdigest()
    path = downloads / md5

    def store() -> None:
        downloads.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write_bytes(path, data)

    try:
        if not path.is_file():
            await asyncio.to_thread(store)
    except OSError as exc:
        raise FetchFailed(f"{what} could not be stored as {path}: {exc}") from exc
    return path, md5


def fqdn_of_url(url: str) -> str:
    """``http://hub/repo/name.fl`` -> ``repo/name.fl`` (what the boot files record in publisher mode)."""
    parts = [p for p in posixpath.normpath(urlsplit(url).path).split("/") if p]
    if len(parts) >= 2:
        try:
            repo, name = split_fqdn(f"{parts[-2]}/{parts[-1]}")
            return f"{repo}/{name}"
        except HubError:
            pass
    if parts:
        try:
            return "/".join(split_fqdn(f"releases/{parts[-1]}"))
        except HubError:
            pass
    raise UnusableRelease(f"release flist URL {url!r} does not end in a usable flist name")
