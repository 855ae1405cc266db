"""``GET /blocks/batch?ids=...``: many held blocks in one answer (wire: ``flist.stores.batch_wire``).

Issue 19: the hub's CPU went to the request, not the block (h11's parse, the ASGI cycle, an answer
per block: 245 us of CPU per 70 KB block served by the fast path, measured). One request per a few
blocks spreads that. Each block is opened the way the single GET opens it (``open_block``: no link
followed) and sized first, so the answer's ``Content-Length`` is known; then the blocks are read and
sent one at a time (memory: one block). A block not held, or larger than the fast path reads, is an
absent frame: the node asks for it alone, and the block route answers it as before.
"""

from __future__ import annotations

import contextlib
import os
from urllib.parse import unquote

from starlette.types import Scope, Send

from zos_upgrade.flist.stores.batch_wire import CONTENT_TYPE, BadBatch, frame_head, parse_query
from zos_upgrade.hubserver.storage import BlockFolder

__all__ = ["BATCH_PATH", "answer_batch"]

BATCH_PATH = "/blocks/batch"
_STATIC = [(b"access-control-allow-origin", b"*"), (b"cache-control", b"no-store")]


async def answer_batch(scope: Scope, send: Send, store: BlockFolder, max_bytes: int) -> None:
    """Answer a batch GET or HEAD from ``store``; a query off the wire is a 400 saying why."""
    try:
        # a client may percent-encode the commas (%2C)
        hexids = parse_query(unquote(scope["query_string"].decode("latin-1")))
    except BadBatch as exc:
        await _send_all(send, 400, [(b"content-type", b"text/plain; charset=utf-8"), *_STATIC],
                        f"{exc}\n".encode())
        return
    opened: list[tuple[bytes, int | None, int]] = []  # head, fd (None: absent), size
    try:
        for hexid in hexids:
            fd, size = _open(store, hexid, max_bytes)
            opened.append((frame_head(bytes.fromhex(hexid), None if fd is None else size), fd, size))
        length = sum(len(head) + (size if fd is not None else 0) for head, fd, size in opened)
        headers = [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", b"%d" % length), *_STATIC]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        for index, (head, fd, size) in enumerate(opened):
            body = head
            if fd is not None:
                data = os.pread(fd, size, 0)
                if len(data) != size:  # blocks never change in place: a truncated file is a fault
                    raise OSError(f"block file shrank while read ({len(data)} of {size} bytes)")
                body += data
            await send({"type": "http.response.body", "body": body, "more_body": index + 1 < len(opened)})
    finally:
        for _head, fd, _size in opened:
            if fd is not None:
                os.close(fd)


def _open(store: BlockFolder, hexid: str, max_bytes: int) -> tuple[int | None, int]:
    """An fd of a held block and its size, or (None, 0): not held, unreadable, or too big to batch."""
    try:
        fd = store.open_block(hexid)
    except OSError:
        return None, 0
    if fd is None:
        return None, 0
    try:
        size = os.fstat(fd).st_size
    except OSError:
        size = max_bytes + 1
    if size > max_bytes:
        with contextlib.suppress(OSError):
            os.close(fd)
        return None, 0
    return fd, size


async def _send_all(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
