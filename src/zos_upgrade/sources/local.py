"""A file an operator names as a release source (``zos-upgrade install``): air-gapped nodes, first boots.

The candidate is a :class:`LocalFlist`: a path on this machine or an http(s) URL. Its bytes are read
(size-limited), must be an flist, and must then be vouched for by the same trust the daemon uses,
chosen by how the node is configured (:class:`Vouch`, one per mode):

* :class:`HubVouch`: the hub's md5 for that flist name, in the repository of the boot link;
* :class:`SignedVouch`: a release signed by a trusted key whose blake2b-256 is the file's, from a
  release object file (no network: for air-gapped nodes) or looked up on the configured publisher;
* :class:`UnsignedVouch`: nothing (``--allow-unsigned``): loud in the log, and recorded in the
  manifest's info (``"unsigned": true``) so ``status`` shows it for as long as the release runs.

Every vouch also says how the release is *named* on the node (boot files, manifest), exactly as the
daemon's own source for that mode would, so the daemon follows on from it afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import posixpath
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.flist.formats import sniff_head
from zos_upgrade.flist.model import FlistError
from zos_upgrade.net import MAX_FLIST_BYTES
from zos_upgrade.publisher.base import Publisher, Upgrade
from zos_upgrade.publisher.signing import TrustedKeys, flist_hash
from zos_upgrade.sources.base import FetchFailed, Target, UnusableRelease, VerificationFailed, VerifiedRelease
from zos_upgrade.sources.publisher import fetch_flist_url, fqdn_of_url, keep_flist
from zos_upgrade.versions import InvalidVersion, parse_version, version_from_name

__all__ = ["HubVouch", "LocalFileSource", "LocalFlist", "SignedVouch", "UnsignedVouch", "Vouch", "Vouched"]

log = logging.getLogger(__name__)

FetchUrl = Callable[[str], Awaitable[bytes]]
HubInfo = Callable[[str], Awaitable[str]]  # "repo/name" -> the md5 the hub announces for it


@dataclass(frozen=True)
class LocalFlist:
    """What the operator named: a file path or an http(s) URL; ``version`` when the name lacks it."""

    location: str
    version: str | None = None

    @property
    def is_url(self) -> bool:
        return urlsplit(self.location).scheme in ("http", "https")

    @property
    def name(self) -> str:
        """The flist's file name (the last path segment of the URL)."""
        path = urlsplit(self.location).path if self.is_url else self.location
        return posixpath.basename(path.rstrip("/"))


@dataclass(frozen=True)
class Vouched:
    """What a vouch found: the release's version, identity on the node, and what vouched for it."""

    version: str
    fqdn: str
    info: dict[str, Any]
    verified_by: str
    block_store: str | None = None
    unsigned: bool = False


class Vouch(Protocol):
    async def __call__(self, data: bytes, candidate: LocalFlist) -> Vouched: ...


def _named_version(candidate: LocalFlist) -> str:
    """The version the name carries (the boot files derive it from the name); ``--version`` must agree."""
    try:
        named = version_from_name(candidate.name)
    except InvalidVersion as exc:
        raise UnusableRelease(f"{candidate.location}: {exc}; rename the file as the release is named "
                              "(e.g. zos:1.2.0.fl)") from exc
    if candidate.version is not None and parse_version(candidate.version).compare(named) != 0:
        raise UnusableRelease(f"{candidate.location}: --version {candidate.version} but the name carries "
                              f"{named}")
    return str(named)


def _symlink_info(link: str, name: str, md5: str, size: int) -> dict[str, Any]:
    """The boot files of a node that follows ``link`` and runs ``name`` (what the hub's /light says)."""
    return {"type": "symlink", "updated": int(time.time()), "md5": md5, "name": posixpath.basename(link),
            "target": name, "size": size}


@dataclass(frozen=True)
class HubVouch:
    """Hub mode: the file is the hub's flist of that name in the boot link's repository (its md5)."""

    link: str            # the boot link the node follows, "repo/name"
    hub_url: str
    hub_md5: HubInfo

    async def __call__(self, data: bytes, candidate: LocalFlist) -> Vouched:
        version = _named_version(candidate)
        fqdn = f"{self.link.split('/')[0]}/{candidate.name}"
        try:
            announced = await self.hub_md5(fqdn)
        except ZosUpgradeError as exc:
            raise VerificationFailed(f"{candidate.location}: the hub {self.hub_url} cannot vouch for it: "
                                     f"{fqdn}: {type(exc).__name__}: {exc}") from exc
        md5 = hashlib.md5(data).hexdigest()
        if md5 != announced:
            raise VerificationFailed(f"{candidate.location} has md5 {md5}; the hub {self.hub_url} announces "
                                     f"{announced or 'no md5'} for {fqdn}: not the hub's release")
        return Vouched(version, self.link, _symlink_info(self.link, candidate.name, md5, len(data)),
                       f"hub md5 ({self.hub_url}/{fqdn})", block_store=self.hub_url + "/blocks")


@dataclass(frozen=True)
class SignedVouch:
    """Publisher mode: a release signed by a trusted key pins the file's blake2b-256. ``release`` is a
    release object file's content (no network); without it the ``publisher`` is asked."""

    trusted: TrustedKeys
    where: str                          # the release object file, or the publisher URL
    release: Upgrade | None = None
    publisher: Publisher | None = None

    async def __call__(self, data: bytes, candidate: LocalFlist) -> Vouched:
        digest = flist_hash(data)
        version, upgrade = await self._find(digest, candidate)
        if upgrade.hash != digest:
            raise VerificationFailed(f"{candidate.location} has blake2b-256 {digest}; release {version} "
                                     f"({self.where}) pins {upgrade.hash}: not that release")
        fqdn = fqdn_of_url(upgrade.flist)
        parts = urlsplit(upgrade.flist)
        info = {"type": "regular", "updated": int(time.time()), "md5": "", "name": fqdn.split("/")[1],
                "target": None}
        return Vouched(version, fqdn, info, f"ed25519-signed blake2b-256 (release {version}, {self.where})",
                       block_store=f"{parts.scheme}://{parts.netloc}/blocks")

    async def _find(self, digest: str, candidate: LocalFlist) -> tuple[str, Upgrade]:
        if self.release is not None:
            text = candidate.version or self.release.version
            if not text:
                raise UnusableRelease(f"{self.where} names no version: say --version")
            version = parse_version(text)
            self.trusted.verify(self.release, version, self.where)
            return str(version), self.release
        assert self.publisher is not None, "a SignedVouch needs a release object or a publisher"
        try:
            if candidate.version is not None:
                version = parse_version(candidate.version)
                return str(version), await self.publisher.get(version)
            versions = await self.publisher.list()
            for version in reversed(versions):  # newest first: the one an operator most likely means
                upgrade = await self.publisher.get(version)
                if upgrade.hash == digest:
                    return str(version), upgrade
        except (ZosUpgradeError, OSError) as exc:
            raise VerificationFailed(f"{candidate.location}: the publisher {self.where} cannot vouch for it: "
                                     f"{type(exc).__name__}: {exc}") from exc
        raise VerificationFailed(f"{candidate.location} has blake2b-256 {digest}, which matches none of the "
                                 f"{len(versions)} release(s) signed by a trusted key at {self.where}")


@dataclass(frozen=True)
class UnsignedVouch:
    """``--allow-unsigned``: nothing vouches; named as the configured mode would name it."""

    link: str | None = None      # hub mode: the boot link the node follows
    hub_url: str | None = None

    async def __call__(self, data: bytes, candidate: LocalFlist) -> Vouched:
        version = _named_version(candidate)
        md5 = hashlib.md5(data).hexdigest()
        if self.link is not None:
            fqdn, info = self.link, _symlink_info(self.link, candidate.name, md5, len(data))
        else:
            fqdn = (fqdn_of_url(candidate.location) if candidate.is_url
                    else fqdn_of_url(f"file:///releases/{candidate.name}"))
            info = {"type": "regular", "updated": int(time.time()), "md5": md5, "name": fqdn.split("/")[1],
                    "target": None}
        log.warning("INSTALLING AN UNSIGNED RELEASE: nothing vouches for its bytes (--allow-unsigned)",
                    extra={"flist": candidate.location, "version": version, "md5": md5})
        store = f"{self.hub_url}/blocks" if self.hub_url else None
        return Vouched(version, fqdn, info, "UNSIGNED (--allow-unsigned)", block_store=store, unsigned=True)


class LocalFileSource:
    """Turns a :class:`LocalFlist` into a VerifiedRelease: read, check it is an flist, vouch, keep."""

    def __init__(self, downloads: Path, vouch: Vouch, *, fetch_url: FetchUrl = fetch_flist_url,
                 max_bytes: int = MAX_FLIST_BYTES) -> None:
        self.downloads = Path(downloads)
        self._vouch = vouch
        self._fetch_url = fetch_url
        self._max = max_bytes

    async def verify(self, candidate: LocalFlist, target: Target) -> VerifiedRelease:
        data = await self._read(candidate)
        try:
            sniff_head(data[:16], candidate.location)
        except FlistError as exc:
            raise UnusableRelease(str(exc)) from exc
        vouched = await self._vouch(data, candidate)
        path, md5 = await keep_flist(self.downloads, data, f"flist {candidate.location}")
        # the manifest keeps this (its info) for as long as the release is installed: status shows it
        info = {**vouched.info, "verified_by": vouched.verified_by, "unsigned": vouched.unsigned}
        return VerifiedRelease(
            target=target, fqdn=vouched.fqdn, version=vouched.version, source=candidate.location, flist=path,
            md5=md5, verified_by=vouched.verified_by, info=info, block_store=vouched.block_store,
        )

    async def _read(self, candidate: LocalFlist) -> bytes:
        try:
            if candidate.is_url:
                return await self._fetch_url(candidate.location)
            return await asyncio.to_thread(self._read_file, Path(candidate.location))
        except (ZosUpgradeError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise FetchFailed(f"flist {candidate.location} could not be read: {type(exc).__name__}: "
                              f"{reason}") from exc

    def _read_file(self, path: Path) -> bytes:
        with path.open("rb") as handle:
            data = handle.read(self._max + 1)
        if len(data) > self._max:
            raise UnusableRelease(f"{path} is larger than {self._max} bytes: not an flist (metadata only)")
        return data
