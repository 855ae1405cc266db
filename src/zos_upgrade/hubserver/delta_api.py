"""``GET /api/delta/{repo}/{name}?from=<md5>[,<md5>...]``: the flist ``repo/name`` as a delta from an
older flist of the same repository the node already holds (SPEC-like notes: docs/flist-delta.md).
The TUF route ``/tuf/{repo}/targets/<sha256>.<name>?delta-from=...`` answers the same way, or with
the whole target when there is no delta (tuf_api.py).

``from`` names up to :data:`MAX_BASES` md5s, the node's preference first; the answer is the delta
from the first one the repository holds (its header names which), or 404 when there is none: the
node then downloads the whole file, as it always could. A malformed ``from`` is a 400.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from zos_upgrade.hubserver.deltas import DeltaCache
from zos_upgrade.hubserver.http import api_error, file_etag, file_response, open_regular
from zos_upgrade.hubserver.storage import HubStorage, StoredFlist

__all__ = ["DELTA_TYPE", "MAX_BASES", "DeltaAPI", "parse_bases"]

MAX_BASES = 8
DELTA_TYPE = "application/vnd.zos.flist-delta"
log = logging.getLogger(__name__)

_MD5 = re.compile(r"[0-9a-f]{32}")


class BadBases(ValueError):
    """``from`` is not a comma-separated list of md5s."""


def parse_bases(value: str | None, param: str = "from") -> list[str]:
    if not value:
        raise BadBases(f"query parameter {param!r} is required: the md5 of an flist the node holds")
    md5s = value.split(",")
    if len(md5s) > MAX_BASES:
        raise BadBases(f"{param!r} names {len(md5s)} flists, more than the {MAX_BASES} allowed")
    for md5 in md5s:
        if not _MD5.fullmatch(md5):
            raise BadBases(f"{param!r} entry {md5[:40]!r} is not 32 lower-case hex digits")
    return md5s


class DeltaAPI:
    """The delta routes' shared answer over one storage root."""

    def __init__(self, storage: HubStorage, cache: DeltaCache) -> None:
        self.storage = storage
        self.cache = cache

    async def flist_delta(self, request: Request) -> Response:
        repo, name = request.path_params["repo"], request.path_params["name"]
        flist = await run_in_threadpool(self.storage.resolve, repo, name)
        answer = await self.answer(request, flist)
        if answer is None:
            bases = request.query_params["from"]
            return api_error(request, f"no delta to {repo}/{flist.filename} from {bases}", 404)
        return answer

    async def answer(self, request: Request, target: StoredFlist, param: str = "from") -> Response | None:
        """The delta to ``target`` from the first base the query's ``param`` names that the repository
        holds; a 400 for a malformed ``param``; None when there is no delta to offer."""
        try:
            bases = parse_bases(request.query_params.get(param), param)
        except BadBases as exc:
            return api_error(request, str(exc), 400)
        path = await run_in_threadpool(self._delta_file, target, bases)
        fd = None if path is None else await run_in_threadpool(open_regular, path)
        if fd is None:
            return None
        st = os.fstat(fd)
        return await file_response(request, fd, st, DELTA_TYPE, file_etag(st))

    def _delta_file(self, target: StoredFlist, bases: list[str]) -> Path | None:
        target_md5 = self.storage.md5(target)
        base = self.cache.find_base(target.repo, bases, target)
        if base is None:
            return None
        try:
            return self.cache.delta(base, self.storage.md5(base), target, target_md5)
        except OSError as exc:  # the cache folder unusable: no delta, the node downloads whole
            log.error("flist delta not kept", extra={"folder": str(self.cache.folder), "reason": str(exc)})
            return None
