"""The block store over HTTP: the layout an ``http://`` block store reads, and authenticated PUTs.

Blocks are content-addressed, so a PUT is checked against its id (blake2b of the body) before it is
stored, and one that is already held is not written again.
"""

from __future__ import annotations

import logging
import os
import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from zos_upgrade.flist.blocks import block_id_matches
from zos_upgrade.hubserver.auth import TokenGuard
from zos_upgrade.hubserver.http import (
    BodyTooLarge,
    api_error,
    api_success,
    file_response,
    read_limited,
)
from zos_upgrade.hubserver.storage import BlockFolder, LinkInBlockFolder

__all__ = ["BlockAPI"]

log = logging.getLogger(__name__)

_BLOCK_HEX = re.compile(r"(?:[0-9a-f]{32}|[0-9a-f]{64})")


class BlockAPI:
    """``GET /blocks/[xx/]<id>`` and ``PUT /blocks/<id>`` over one block folder (or none)."""

    def __init__(self, store: BlockFolder | None, guard: TokenGuard, max_block_bytes: int) -> None:
        self.store = store
        self.guard = guard
        self.max_block_bytes = max_block_bytes

    def _open_block(self, hexid: str) -> int | None:
        # BlockFolder opens each component without following a link: a symlinked fan-out folder is
        # "not found", never a read outside the block folder
        if self.store is None or not _BLOCK_HEX.fullmatch(hexid):
            return None
        return self.store.open_block(hexid)

    async def get_block(self, request: Request) -> Response:
        params = request.path_params
        hexid = params["hex"]
        if "xx" in params and params["xx"] != hexid[:2]:
            return api_error(request, f"block {hexid} is not in folder {params['xx']!r}", 404)
        fd = self._open_block(hexid)  # a few opens without a link: a thread hop would cost more
        if fd is None:
            return api_error(request, "block not found", 404)
        st = os.fstat(fd)
        return await file_response(request, fd, st, "application/octet-stream", f'"{hexid}"')

    async def put_block(self, request: Request) -> Response:
        self.guard.authorize(request)
        hexid = request.path_params["hex"]
        if self.store is None:
            return api_error(request, "this hub holds no block store", 404)
        if not _BLOCK_HEX.fullmatch(hexid):
            return api_error(request, f"block id {hexid[:80]!r} is not 32 or 64 lower-case hex digits", 400)
        try:
            body = await read_limited(request, self.max_block_bytes)
        except BodyTooLarge as exc:
            return api_error(request, str(exc), 413)
        if not block_id_matches(bytes.fromhex(hexid), body):
            return api_error(
                request, f"body of {len(body)} bytes does not hash (blake2b) to block {hexid}", 400
            )
        existed = await run_in_threadpool(self.store.holds, hexid)
        if not existed:
            try:
                await self.store.put(bytes.fromhex(hexid), body)
            except LinkInBlockFolder as exc:  # nothing written; the hub's paths stay in its log
                log.error("block not stored", extra={"block": hexid, "reason": str(exc)})
                return api_error(
                    request, f"block {hexid} not stored: its folder {hexid[:2]!r} is not a plain folder", 409
                )
        return api_success(request, {"id": hexid, "stored": not existed}, 200 if existed else 201)
