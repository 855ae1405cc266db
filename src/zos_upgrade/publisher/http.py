"""``HTTPPublisher``: the release-server client (SPEC 7) a node polls.

Every request goes through :func:`zos_upgrade.net.fetch` (timeouts, retries on 5xx and connection
errors, none on 4xx, size limits). Documents are fetched conditionally: the last validated answer of
each URL is kept with its ``ETag`` / ``Last-Modified``, and a ``304`` reuses it, so polling an
unchanged server costs a few hundred bytes. Only values that passed validation (and, for release
objects, signature verification) are ever cached.

Errors about what the server *said* are :class:`~zos_upgrade.publisher.base.PublisherError`\\ s;
errors about *reaching* it are :class:`zos_upgrade.net.TransportError`\\ s (``NetworkError``,
``NotFound`` for an unknown version, ``HTTPStatusError``, ``ResponseTooLarge``).

Verification is on unless the caller says otherwise: ``trusted_keys`` is a required argument; pass
the trusted public keys, or ``None`` to turn verification off (for inspection tools such as
``release ls --url`` that verify on their own), which is logged as a warning on every client made.
An empty key list is refused: it would refuse every release, which is never what was meant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zos_upgrade.net import RetryPolicy, Sleep, fetch
from zos_upgrade.publisher.base import (
    INDEX_MAX_BYTES,
    InvalidAnswer,
    PublisherError,
    UnsignedRelease,
    Upgrade,
    check_latest_listed,
    decode_latest,
    decode_upgrade,
    decode_versions,
)
from zos_upgrade.publisher.signing import TrustedKeys, check_flist
from zos_upgrade.versions import Version

__all__ = ["HTTPPublisher"]

log = logging.getLogger(__name__)

T = TypeVar("T")

FLIST_MAX_BYTES = 256 << 20  # an flist is metadata only


@dataclass(frozen=True)
class _Cached:
    etag: str | None
    last_modified: str | None
    value: Any


def _strong_last_modified(headers: Mapping[str, str]) -> str | None:
    """``Last-Modified`` if it can validate: a file changed twice within its one-second resolution
    would otherwise be answered 304 forever, so it must be at least a second older than ``Date``
    (RFC 9110 section 8.8.2.2)."""
    modified, date = headers.get("last-modified"), headers.get("date")
    if not modified or not date:
        return None
    try:
        age = parsedate_to_datetime(date) - parsedate_to_datetime(modified)
    except (TypeError, ValueError):
        return None
    return modified if age.total_seconds() >= 1 else None


class HTTPPublisher:
    """A :class:`~zos_upgrade.publisher.base.Publisher` over HTTP(S), verifying what it returns."""

    def __init__(
        self,
        base_url: str,
        trusted_keys: Iterable[Ed25519PublicKey] | TrustedKeys | None,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        index_max_bytes: int = INDEX_MAX_BYTES,
        flist_max_bytes: int = FLIST_MAX_BYTES,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise PublisherError(f"publisher URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        if trusted_keys is None:
            self._trusted: TrustedKeys | None = None
            log.warning("release signature verification is OFF", extra={"publisher": self.base_url})
        else:
            self._trusted = (
                trusted_keys if isinstance(trusted_keys, TrustedKeys) else TrustedKeys(trusted_keys)
            )
            if not len(self._trusted):
                raise PublisherError(
                    f"{self.base_url}: no trusted keys given; pass trusted public keys, "
                    "or None to turn verification off explicitly"
                )
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(transport=transport, timeout=timeout)
        self._retry = retry
        self._sleep = sleep
        self._index_max = index_max_bytes
        self._flist_max = flist_max_bytes
        self._cache: dict[str, _Cached] = {}

    @property
    def verifying(self) -> bool:
        return self._trusted is not None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> HTTPPublisher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _document(self, url: str, decode: Callable[[bytes], T]) -> T:
        """GET ``url`` conditionally; decode (and validate) a fresh answer, reuse the cached one on 304."""
        cached = self._cache.get(url)
        headers = {}
        if cached is not None:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified
        result = await fetch(
            self._client, url, max_bytes=self._index_max, expect=(200, 304), headers=headers,
            retry=self._retry, sleep=self._sleep,
        )
        if result.status == 304:
            if cached is None:
                raise InvalidAnswer(f"{url}: answered 304 Not Modified to a request that was not conditional")
            value: T = cached.value
            return value
        value = decode(result.body)
        etag, modified = result.etag, _strong_last_modified(result.headers)
        if etag or modified:
            self._cache[url] = _Cached(etag, modified, value)
        else:
            self._cache.pop(url, None)
        return value

    async def list(self) -> list[Version]:
        url = f"{self.base_url}/versions"
        return list(await self._document(url, lambda body: decode_versions(body, url)))

    async def latest(self) -> Version:
        """The newest version; refused unless ``versions`` lists it."""
        url = f"{self.base_url}/latest"
        latest = await self._document(url, lambda body: decode_latest(body, url))
        check_latest_listed(latest, await self.list(), url)
        return latest

    async def get(self, version: Version) -> Upgrade:
        """The release object of ``version``, verified against the trusted keys (when verifying)."""
        url = f"{self.base_url}/{version}"

        def decode(body: bytes) -> Upgrade:
            upgrade = decode_upgrade(body, url)
            if self._trusted is not None:
                signer = self._trusted.verify(upgrade, version, url)
                log.debug("release signature verified", extra={"version": str(version), "key_id": signer})
            return msgspec.structs.replace(upgrade, version=str(version))

        return await self._document(url, decode)

    async def download(self, upgrade: Upgrade) -> bytes:
        """The flist file of ``upgrade``; raises :class:`HashMismatch` unless it is the pinned one.

        With verification off, an object without ``hash`` is downloaded unchecked (and logged so).
        """
        where = f"release {upgrade.version or '?'}"
        if not upgrade.hash and self._trusted is not None:  # get() never returns such an object then
            raise UnsignedRelease(f"{where} carries no hash; cannot check its flist {upgrade.flist}")
        result = await fetch(
            self._client, upgrade.flist, max_bytes=self._flist_max, retry=self._retry, sleep=self._sleep
        )
        if upgrade.hash:
            check_flist(upgrade, result.body, where)
        else:
            log.warning("flist downloaded unchecked: release has no hash", extra={"flist": upgrade.flist})
        return result.body
