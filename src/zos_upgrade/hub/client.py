"""HubClient: the node's and the release engineer's side of a 0-hub (SPEC 6).

The only module of ``hub/`` that does network I/O. Every request goes through
:func:`zos_upgrade.net.fetch` (timeouts, retries with backoff on 5xx and transport errors, size
limits); every answer is decoded strictly into the structs of :mod:`zos_upgrade.hub.models`.
Read calls are conditional: the client remembers the ``ETag`` of each URL and a ``304`` returns
the value it decoded before, so a watcher polling a hub costs the hub almost nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import msgspec

from zos_upgrade import fsutil
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.hub.models import (
    ApiReply,
    FlistContents,
    FlistInfo,
    HubAnswerInvalid,
    HubError,
    RepoEntry,
    Repository,
    WriteRefused,
)
from zos_upgrade.hub.names import ARCHIVE_SUFFIX, FLIST_SUFFIXES, split_fqdn, validate_name
from zos_upgrade.hub.rollout import HaltFlag, Report, RolloutStatus
from zos_upgrade.leanhttp import LeanClient, proxy_configured
from zos_upgrade.net import MAX_FLIST_BYTES, FetchResult, RetryPolicy, fetch

if TYPE_CHECKING:
    import httpx

__all__ = ["HubClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MiB = 1024 * 1024
_MD5 = re.compile(r"[0-9a-f]{32}")
# a HEAD answer declares the block's length; no body is read
_MAX_BLOCK = 64 * MiB
_DOWNLOAD_TRIES = 3
# a daemon polls a handful of URLs; the bound only matters for a client used as a crawler
_REMEMBERED_URLS = 256
_BLOCK_ID = re.compile(r"(?:[0-9a-f]{32}|[0-9a-f]{64})")


def _segment(value: str) -> str:
    # names are validated already; quoting keeps '#', '?' and spaces from changing the URL's meaning
    return quote(value, safe=":@+,;=")


class HubClient:
    """An async client of a 0-hub compatible server (ours or the real one)."""

    def __init__(
        self,
        base_url: str,
        *,
        cache_dir: Path | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_json_bytes: int = 16 * MiB,
        max_flist_bytes: int = MAX_FLIST_BYTES,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise HubError(f"hub URL {base_url!r} must start with http:// or https://")
        self._base = base_url.rstrip("/")
        self._cache_dir = cache_dir
        self._token = token
        self._retry = retry or RetryPolicy(deadline=max(timeout * 2, 1.0))
        self._max_json = max_json_bytes
        self._max_flist = max_flist_bytes
        self._timeout = timeout
        self._transport = transport
        # httpx is loaded at the first download, block or write call, not for a poll (issue 19)
        self._httpx: httpx.AsyncClient | None = None
        # the JSON reads (a watcher's polls) go through the lean client, under the same fetch rules;
        # through httpx when a test injects a transport or a proxy is configured (httpx honours it)
        self._lean: LeanClient | None = None
        if transport is None and not proxy_configured():
            self._lean = LeanClient(timeout=timeout, headers={"Accept": "application/json"})
        # url -> (etag, decoded value): what a 304 stands for
        self._conditional: OrderedDict[str, tuple[str, Any]] = OrderedDict()

    @property
    def base_url(self) -> str:
        return self._base

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._httpx is None:
            import httpx

            self._httpx = httpx.AsyncClient(
                transport=self._transport,
                timeout=self._timeout,
                follow_redirects=True,
                headers={"Accept": "application/json"},
            )
        return self._httpx

    async def aclose(self) -> None:
        if self._httpx is not None:
            await self._httpx.aclose()
        if self._lean is not None:
            await self._lean.aclose()

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ read API

    async def repositories(self) -> list[Repository]:
        """``GET /api/repositories``."""
        return await self._get_json(f"{self._base}/api/repositories", list[Repository])

    async def info(self, fqdn: str) -> FlistInfo:
        """``GET /api/flist/<repo>/<name>/light``: name, size, updated, type, md5 (+ target, linktime)."""
        repo, name = split_fqdn(fqdn)
        url = f"{self._base}/api/flist/{_segment(repo)}/{_segment(name)}/light"
        info = await self._get_json(url, FlistInfo)
        if not _MD5.fullmatch(info.md5):
            raise HubAnswerInvalid(f"{url}: md5 {info.md5!r} is not 32 lower-case hex digits")
        if info.size < 0 or info.updated < 0:
            raise HubAnswerInvalid(f"{url}: negative size or updated in {info!r}")
        return info

    async def list(self, repo: str) -> list[RepoEntry]:
        """``GET /api/flist/<repo>``: every flist, symlink, tag and taglink of a repository."""
        validate_name(repo, "repository")
        url = f"{self._base}/api/flist/{_segment(repo)}"
        entries = await self._get_json(url, list[RepoEntry])
        seen: set[str] = set()
        for entry in entries:
            if entry.name in seen:
                raise HubAnswerInvalid(f"{url}: the listing names {entry.name!r} twice")
            seen.add(entry.name)
        return entries

    async def files(self, fqdn: str) -> FlistContents:
        """``GET /api/flist/<repo>/<name>``: the tree inside an flist."""
        repo, name = split_fqdn(fqdn)
        return await self._get_json(
            f"{self._base}/api/flist/{_segment(repo)}/{_segment(name)}", FlistContents
        )

    async def download(self, fqdn: str, dest_dir: Path | None = None) -> Path:
        """Download an flist into the md5 cache and return ``<dir>/<md5>``.

        ``dir`` is ``dest_dir`` or the client's ``cache_dir``. A file already cached is re-hashed
        before it is trusted; a download is checked against the md5 the hub announces in ``/light``
        and only then renamed into place. When the bytes do not match, the flist may have changed
        between the two requests (a link moved, a re-upload): the info is read again and the bytes
        are kept if they are what the hub announces now; after three tries it is an error.

        When ``dir`` holds older flists (a node keeps its installed release's), the hub is first
        asked for a delta from them (``/api/delta``, docs/flist-delta.md); the file it rebuilds is
        checked against the same md5, and any failure falls back to the whole download.
        """
        folder = dest_dir or self._cache_dir
        if folder is None:
            raise HubError(
                f"download of {fqdn}: no destination (pass dest_dir or build the client with cache_dir)"
            )
        repo, name = split_fqdn(fqdn)
        url = f"{self._base}/{_segment(repo)}/{_segment(name)}"
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        info = await self.info(fqdn)
        for attempt in range(1, _DOWNLOAD_TRIES + 1):
            cached = folder / info.md5
            if await asyncio.to_thread(self._cached_is_valid, cached, info.md5):
                log.debug("flist served from cache", extra={"flist": fqdn, "md5": info.md5})
                return cached
            if attempt == 1:
                rebuilt = await self._from_delta(fqdn, folder, info.md5)
                if rebuilt is not None:
                    return rebuilt
            result = await fetch(self._http, url, max_bytes=self._max_flist, retry=self._retry)
            import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

            actual = hashlib.md5(result.body).hexdigest()
            announced = info.md5
            if actual != announced:
                info = await self.info(fqdn)
            if actual == info.md5:
                path = folder / actual
                await asyncio.to_thread(fsutil.atomic_write_bytes, path, result.body)
                log.info("flist downloaded", extra={"flist": fqdn, "md5": actual, "bytes": len(result.body)})
                return path
            log.warning(
                "downloaded flist does not match its announced md5",
                extra={"flist": fqdn, "expected": announced, "actual": actual, "attempt": attempt},
            )
        raise HubAnswerInvalid(
            f"{url}: downloaded bytes never matched the md5 the hub announced in {_DOWNLOAD_TRIES} tries "
            f"(the flist kept changing, or the hub serves other bytes than it describes)"
        )

    async def _from_delta(self, fqdn: str, folder: Path, md5: str) -> Path | None:
        """``folder/<md5>`` rebuilt from a delta against a flist ``folder`` holds, or None (logged)."""
        # here: the flist delta codec (and the flist model under it) is a download's, not a poll's
        from zos_upgrade.flist.delta import DeltaInvalid
        from zos_upgrade.flist.delta_files import delta_bases, rebuild_from_delta

        bases = await asyncio.to_thread(delta_bases, folder, md5)
        if not bases:
            return None
        repo, name = split_fqdn(fqdn)
        url = (f"{self._base}/api/delta/{_segment(repo)}/{_segment(name)}"
               f"?from={','.join(p.name for p in bases)}")
        try:
            result = await fetch(self._http, url, max_bytes=self._max_flist, expect=(200, 404),
                                 retry=self._retry)
            if result.status == 404:
                log.info("no flist delta offered, downloading whole", extra={"flist": fqdn, "md5": md5})
                return None
            data = await asyncio.to_thread(rebuild_from_delta, result.body, bases, self._max_flist)
            import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

            if hashlib.md5(data).hexdigest() != md5:
                raise DeltaInvalid(f"{url}: the rebuilt flist does not have the announced md5 {md5}")
            path = folder / md5
            await asyncio.to_thread(fsutil.atomic_write_bytes, path, data)
        except (ZosUpgradeError, OSError) as exc:
            log.warning("flist delta refused, downloading whole",
                        extra={"flist": fqdn, "md5": md5, "reason": f"{type(exc).__name__}: {exc}"})
            return None
        log.info("flist rebuilt from delta", extra={"flist": fqdn, "md5": md5, "bytes": len(result.body),
                                                    "size": len(data)})
        return path

    @staticmethod
    def _cached_is_valid(path: Path, md5: str) -> bool:
        try:
            if fsutil.file_md5(path) == md5:
                return True
        except FileNotFoundError:
            return False
        log.warning("cached flist is corrupt, downloading it again", extra={"path": str(path)})
        path.unlink(missing_ok=True)
        return False

    # ------------------------------------------------------------------ blocks

    async def get_block(self, block_id: str) -> bytes:
        """``GET /blocks/<xx>/<hex>``; the hub checked the hash on upload, the caller checks it again."""
        self._check_block_id(block_id)
        url = f"{self._base}/blocks/{block_id[:2]}/{block_id}"
        return (await fetch(self._http, url, max_bytes=_MAX_BLOCK, retry=self._retry)).body

    async def has_block(self, block_id: str) -> bool:
        self._check_block_id(block_id)
        url = f"{self._base}/blocks/{block_id[:2]}/{block_id}"
        result = await fetch(
            self._http, url, method="HEAD", max_bytes=_MAX_BLOCK, expect=(200, 404), retry=self._retry
        )
        return result.status == 200

    async def put_block(self, block_id: str, data: bytes) -> None:
        """``PUT /blocks/<hex>``: the hub refuses a body whose blake2b is not the id."""
        self._check_block_id(block_id)
        await self._write("PUT", f"/blocks/{block_id}", content=data)

    @staticmethod
    def _check_block_id(block_id: str) -> None:
        if not isinstance(block_id, str) or not _BLOCK_ID.fullmatch(block_id):
            raise HubError(f"block id {block_id!r} is not 32 or 64 lower-case hex digits")

    # ------------------------------------------------------------------ write API (needs a token)

    async def whoami(self) -> str:
        """``GET /api/flist/me``: the repository the token owns."""
        payload = await self._write("GET", "/api/flist/me")
        user = payload.get("username")
        if not isinstance(user, str):
            raise HubAnswerInvalid(f"{self._base}/api/flist/me: payload has no 'username' string")
        return user

    async def upload(self, path: Path, name: str | None = None) -> dict[str, Any]:
        """Store an ``.flist``/``.fl`` file (``POST /api/flist/me/upload-flist``: the hub checks its
        blocks are held), or have the hub make an flist of a ``.tar.gz`` archive (``POST
        /api/flist/me/upload``); returns the reply's payload (the real 0-hub's shape)."""
        filename = validate_name(name or path.name, "flist name")
        if filename.endswith(FLIST_SUFFIXES):
            endpoint = "/api/flist/me/upload-flist"
        elif filename.endswith(ARCHIVE_SUFFIX):
            endpoint = "/api/flist/me/upload"
        else:
            raise HubError(
                f"{filename!r}: expected an flist (.flist, .fl) or a {ARCHIVE_SUFFIX} archive to upload"
            )
        data = await asyncio.to_thread(path.read_bytes)
        import httpx  # its multipart encoder; an upload is the release engineer's, never a poll

        request = httpx.Request(
            "POST", self._base, files={"file": (filename, data, "application/octet-stream")}
        )
        body = request.read()
        return await self._write(
            "POST",
            endpoint,
            content=body,
            headers={"Content-Type": request.headers["Content-Type"]},
        )

    async def link(self, src: str, link: str) -> None:
        """Point ``link`` (in the token's repository) at ``src`` (same repository)."""
        await self._write("GET", f"/api/flist/me/{self._n(src)}/link/{self._n(link)}")

    async def crosslink(self, link: str, repo: str, src: str) -> None:
        """Point ``link`` (token's repository) at ``repo/src``."""
        await self._write("GET", f"/api/flist/me/{self._n(link)}/crosslink/{self._n(repo)}/{self._n(src)}")

    async def crosstag(self, link: str, repo: str, tag: str) -> None:
        """Make ``link`` a taglink to the tag ``tag`` of ``repo``."""
        await self._write("GET", f"/api/flist/me/{self._n(link)}/crosstag/{self._n(repo)}/{self._n(tag)}")

    async def tag(self, tag: str, link: str, repo: str, src: str) -> None:
        """Add ``link`` -> ``repo/src`` to the tag ``tag`` of the token's repository."""
        await self._write(
            "GET", f"/api/flist/me/{self._n(tag)}/{self._n(link)}/tag/{self._n(repo)}/{self._n(src)}"
        )

    async def untag(self, tag: str, link: str, repo: str, src: str) -> None:
        await self._write(
            "DELETE", f"/api/flist/me/{self._n(tag)}/{self._n(link)}/tag/{self._n(repo)}/{self._n(src)}"
        )

    async def rename(self, src: str, dst: str) -> None:
        await self._write("GET", f"/api/flist/me/{self._n(src)}/rename/{self._n(dst)}")

    async def delete(self, name: str) -> None:
        await self._write("DELETE", f"/api/flist/me/{self._n(name)}")

    # ------------------------------------------------------------------ fleet feedback (issue 20)

    def _rollout_path(self, fqdn: str) -> str:
        repo, name = split_fqdn(fqdn)
        return f"/api/rollout/{_segment(repo)}/{_segment(name)}"

    async def rollout_status(self, fqdn: str) -> RolloutStatus:
        """``GET /api/rollout/<repo>/<name>``: counts, reasons, halt, history."""
        return await self._get_json(self._base + self._rollout_path(fqdn), RolloutStatus)

    async def halt_flag(self, fqdn: str) -> HaltFlag:
        """``GET .../halt``: whether the release's rollout is halted (read unsigned: it only stops)."""
        return await self._get_json(self._base + self._rollout_path(fqdn) + "/halt", HaltFlag)

    async def report(self, fqdn: str, report: Report) -> bool:
        """``POST .../report`` with this client's token (the node's); True when the rollout is halted."""
        payload = await self._write("POST", self._rollout_path(fqdn) + "/report",
                                    content=msgspec.json.encode(report),
                                    headers={"Content-Type": "application/json"})
        return bool(payload.get("halted"))

    async def halt(self, fqdn: str, reason: str = "") -> dict[str, Any]:
        """``POST .../halt`` with the repository's write token."""
        body = json.dumps({"reason": reason}).encode() if reason else b""
        return await self._write("POST", self._rollout_path(fqdn) + "/halt", content=body,
                                 headers={"Content-Type": "application/json"})

    async def set_plan(self, fqdn: str, plan: bytes) -> dict[str, Any]:
        """``PUT .../plan``: the release's rollout plan document (JSON) with the write token."""
        return await self._write("PUT", self._rollout_path(fqdn) + "/plan", content=plan,
                                 headers={"Content-Type": "application/json"})

    async def resume(self, fqdn: str) -> dict[str, Any]:
        return await self._write("POST", self._rollout_path(fqdn) + "/resume", content=b"")

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _n(value: str) -> str:
        return _segment(validate_name(value))

    async def _get_json(self, url: str, kind: type[T]) -> T:
        remembered = self._conditional.get(url)
        headers = {"If-None-Match": remembered[0]} if remembered else None
        result = await fetch(
            self._lean or self._http, url, max_bytes=self._max_json, expect=(200, 304), headers=headers,
            retry=self._retry,
        )
        if result.status == 304:
            if remembered is None:
                raise HubAnswerInvalid(f"{url}: 304 Not Modified to a request that was not conditional")
            value: T = remembered[1]
            return value
        decoded = self._decode(result, kind)
        if result.etag:
            self._conditional[url] = (result.etag, decoded)
            self._conditional.move_to_end(url)
            while len(self._conditional) > _REMEMBERED_URLS:
                self._conditional.popitem(last=False)
        else:
            self._conditional.pop(url, None)
        return decoded

    @staticmethod
    def _decode(result: FetchResult, kind: type[T]) -> T:
        try:
            return msgspec.json.decode(result.body, type=kind, strict=True)
        except msgspec.ValidationError as exc:
            raise HubAnswerInvalid(f"{result.url}: unexpected answer shape: {exc}") from exc
        except msgspec.DecodeError as exc:
            kind_of = result.headers.get("content-type", "no content type")
            excerpt = result.body[:80].decode("utf-8", "replace")
            raise HubAnswerInvalid(
                f"{result.url}: answer is not valid JSON "
                f"({kind_of}, {len(result.body)} bytes: {excerpt!r}): {exc}"
            ) from exc

    async def _write(
        self, method: str, path: str, *, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if not self._token:
            raise WriteRefused(f"{method} {self._base}{path}: this call needs a token", status=401)
        url = f"{self._base}{path}"
        all_headers = {"Authorization": f"bearer {self._token}", **(headers or {})}
        result = await fetch(
            self._http,
            url,
            method=method,
            max_bytes=self._max_json,
            headers=all_headers,
            content=content,
            expect=_WRITE_STATUSES,
            retry=self._retry,
        )
        try:
            reply = self._decode(result, ApiReply)
        except HubAnswerInvalid:
            if result.status < 300:
                raise
            excerpt = result.body[:200].decode("utf-8", "replace")
            raise WriteRefused(
                f"{method} {url}: refused with {result.status}: {excerpt}", status=result.status
            ) from None
        if result.status >= 300 or reply.status != "success":
            message = reply.message or "error without message"
            raise WriteRefused(
                f"{method} {url}: refused with {result.status}: {message}", status=result.status
            )
        return reply.payload or {}


# a write's 4xx carries the hub's reason in JSON: take it instead of letting fetch raise. So does a
# 500 of the real 0-hub (it refuses every bad upload with 500 and a message): taken as an answer, not
# retried. 502, 503 and 504 (a proxy's, or our hub busy) are transient, so fetch retries them.
_WRITE_STATUSES = (
    tuple(range(200, 300))
    + tuple(range(400, 500))
    + tuple(s for s in range(500, 600) if s not in (502, 503, 504))
)
