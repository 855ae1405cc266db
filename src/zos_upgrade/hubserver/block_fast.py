"""The block GET answered ahead of the Starlette app: what a node asks the hub thousands of times.

Issue 19: the hub spent 1.75x ``python -m http.server``'s CPU per block. Most of it was not the
block: the route table walked for every request (the block routes sit behind thirty others), a
Request and a Response object, and two worker-thread hops (one for the open, one for the read).
Here the common case -- ``GET``/``HEAD /blocks/[xx/]<id>`` of a block that is held, with no
``Range`` -- is answered straight from the ASGI scope: the name checked by the same rule, the file
opened by the same :meth:`BlockFolder.open_block` (no link followed), the bytes read with one
``pread`` on the event loop (a block is at most :data:`FAST_MAX_BYTES`, read from the page cache in
microseconds: a thread hop costs more than it saves). The answer carries the headers the route's
would (``ETag``, ``Accept-Ranges``, CORS, ``If-None-Match`` -> 304).

``GET``/``HEAD /blocks/batch?ids=...`` (several blocks in one answer) is answered here too
(``block_batch``).

Everything else -- a bad name, a block not held, a wrong shard folder, ``Range``/``If-Range``, a
larger block, an error while opening -- goes to the app's block route unchanged, which answers it
as before (JSON 404s, 206, 416, streaming).
"""

from __future__ import annotations

import os
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from zos_upgrade.hubserver.block_batch import BATCH_PATH, answer_batch
from zos_upgrade.hubserver.http import names_etag
from zos_upgrade.hubserver.storage import BlockFolder

__all__ = ["FAST_MAX_BYTES", "BlockFastPath"]

FAST_MAX_BYTES = 1024 * 1024  # blocks are 512 KiB of content before compression at most
_PATH = re.compile(r"/blocks/(?:([0-9a-f]{2})/)?([0-9a-f]{32}|[0-9a-f]{64})")
_STATIC = [(b"accept-ranges", b"bytes"), (b"access-control-allow-origin", b"*")]
_OCTETS = (b"content-type", b"application/octet-stream")


class BlockFastPath:
    """ASGI middleware: held blocks answered directly, any other request passed to ``app``."""

    def __init__(self, app: ASGIApp, store: BlockFolder | None) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.store is None or scope["type"] != "http" or scope["method"] not in ("GET", "HEAD")
                or not scope["path"].startswith("/blocks/")):
            await self.app(scope, receive, send)
            return
        if scope["path"] == BATCH_PATH:
            await answer_batch(scope, send, self.store, FAST_MAX_BYTES)
            return
        answer = self._answer(scope)
        if answer is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            return None
        shard, hexid = match.groups()
        if shard is not None and shard != hexid[:2]:
            return None
        inm = None
        for name, value in scope["headers"]:
            if name in (b"range", b"if-range"):
                return None
            if name == b"if-none-match":
                inm = value
        assert self.store is not None
        try:
            fd = self.store.open_block(hexid)
        except OSError:
            return None
        if fd is None:
            return None
        try:
            size = os.fstat(fd).st_size
            if size > FAST_MAX_BYTES:
                return None
            etag = b'"' + hexid.encode() + b'"'
            headers = [(b"etag", etag), *_STATIC]
            if inm is not None and names_etag(inm.decode("latin-1"), etag.decode()):
                return 304, headers, b""
            headers += [(b"content-length", b"%d" % size), _OCTETS]
            if scope["method"] == "HEAD":
                return 200, headers, b""
            body = os.pread(fd, size, 0)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(body) != size:
            return None  # the file changed under us: the route's answer is the careful one
        return 200, headers, body

