"""The hub's TUF routes (issue 15): each repository's metadata and consistent-snapshot targets.

- ``GET /tuf/{repo}/metadata/{file}``: the stored file, ``Cache-Control: no-cache`` with ``ETag``
  and ``Last-Modified``, so a polling node's ``If-None-Match`` / ``If-Modified-Since`` costs a 304.
- ``GET /tuf/{repo}/targets/{sha256}.{name}``: the flist ``repo/name`` (a link followed), served only
  when its sha256 is the one asked for; a file that changed since it was signed is a 404.
- ``GET /tuf/{repo}/targets/{sha256}.{name}?delta-from=<md5>[,...]``: that target as a delta from an
  flist the node holds (hubserver/delta_api.py), or the whole target when there is none.
- ``PUT /tuf/{repo}/metadata/{file}``: the repository's write token; checked by :class:`TufStore`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from email.utils import formatdate, parsedate_to_datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from zos_upgrade.hub.models import InvalidName
from zos_upgrade.hub.names import validate_name
from zos_upgrade.hubserver.auth import TokenGuard, Unauthorized
from zos_upgrade.hubserver.delta_api import DeltaAPI
from zos_upgrade.hubserver.http import (
    BodyTooLarge,
    api_error,
    api_success,
    file_etag,
    file_response,
    open_regular,
    read_limited,
)
from zos_upgrade.hubserver.storage import HubStorage, StoredFlist
from zos_upgrade.hubserver.tuf_store import MAX_METADATA_BYTES, MetadataRefused, TufStore
from zos_upgrade.trust.errors import TrustError
from zos_upgrade.trust.layout import parse_metadata_filename, split_hashed_target_name

__all__ = ["TufAPI"]

_HASHES_KEPT = 1024
_CHUNK = 1024 * 1024
_RACY_SECONDS = 2.0


def _sha256_of(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


class TufAPI:
    """The TUF routes' handlers over one storage root."""

    def __init__(self, storage: HubStorage, store: TufStore, guard: TokenGuard, deltas: DeltaAPI) -> None:
        self.storage = storage
        self.deltas = deltas
        self.store = store
        self.guard = guard
        # sha256 of served flists by (dev, ino, size, mtime_ns): a poll never re-hashes a file
        self._hashes: OrderedDict[tuple[int, int, int, int], str] = OrderedDict()

    async def metadata(self, request: Request) -> Response:
        repo, filename = request.path_params["repo"], request.path_params["file"]
        try:
            parse_metadata_filename(filename)
        except TrustError as exc:
            return api_error(request, str(exc), 404)
        path = self.store.metadata_dir(repo) / filename
        fd = await run_in_threadpool(open_regular, path)
        if fd is None:
            return api_error(request, f"repository {repo!r} has no TUF metadata {filename}", 404)
        st = os.fstat(fd)
        headers = {"Cache-Control": "no-cache"}
        # a file changed within the last seconds may change again with the same Last-Modified
        # second: no date then (git's "racy" rule), the ETag still makes the poll cheap
        if time.time() - st.st_mtime >= _RACY_SECONDS:
            headers["Last-Modified"] = formatdate(st.st_mtime, usegmt=True)
        if (
            "Last-Modified" in headers
            and "if-none-match" not in request.headers
            and _not_modified_since(request, st.st_mtime)
        ):
            os.close(fd)
            return Response(status_code=304, headers={**headers, "ETag": file_etag(st)})
        response = await file_response(request, fd, st, "application/json", file_etag(st))
        response.headers.update(headers)
        return response

    async def target(self, request: Request) -> Response:
        checked = await self._checked_target(request)
        if isinstance(checked, Response):
            return checked
        flist, fd, st = checked
        if "delta-from" in request.query_params:
            # on the target's own URL, so whatever serves or intercepts the target answers this too;
            # no delta: the whole target, as a server ignoring the query would send
            try:
                delta = await self.deltas.answer(request, flist, "delta-from")
            except BaseException:
                os.close(fd)
                raise
            if delta is not None:
                os.close(fd)
                return delta
        return await file_response(request, fd, st, "application/octet-stream", file_etag(st))

    async def _checked_target(self, request: Request) -> tuple[StoredFlist, int, os.stat_result] | Response:
        """The stored flist a ``<sha256>.<name>`` path names, open, when its sha256 is that one."""
        repo, hashname = request.path_params["repo"], request.path_params["hashname"]
        try:
            digest, name = split_hashed_target_name(hashname)
            validate_name(repo, "repository")
        except (TrustError, InvalidName) as exc:
            return api_error(request, str(exc), 404)
        flist = await run_in_threadpool(self.storage.resolve, repo, name)
        fd = await run_in_threadpool(open_regular, flist.real)
        if fd is None:
            return api_error(request, "source not found", 404)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        actual = self._hashes.get(key)
        if actual is None:
            try:
                actual = await run_in_threadpool(_sha256_of, fd)
            except BaseException:
                os.close(fd)
                raise
            self._hashes[key] = actual
            while len(self._hashes) > _HASHES_KEPT:
                self._hashes.popitem(last=False)
        if actual != digest:
            os.close(fd)
            return api_error(request, f"{repo}/{name} has sha256 {actual}, not {digest}", 404)
        return flist, fd, st

    async def upload(self, request: Request) -> Response:
        repo, filename = request.path_params["repo"], request.path_params["file"]
        owner = self.guard.authorize(request)
        if owner != repo:
            raise Unauthorized(f"this token writes repository {owner!r}, not {repo!r}", 403)
        try:
            data = await read_limited(request, MAX_METADATA_BYTES)
        except BodyTooLarge as exc:
            return api_error(request, str(exc), 413)
        try:
            version = await run_in_threadpool(self.store.accept, repo, filename, data)
        except MetadataRefused as exc:
            return api_error(request, str(exc), exc.status)
        return api_success(request, {"repository": repo, "file": filename, "version": version})


def _not_modified_since(request: Request, mtime: float) -> bool:
    header = request.headers.get("if-modified-since")
    if not header:
        return False
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return False
    return int(mtime) <= since
