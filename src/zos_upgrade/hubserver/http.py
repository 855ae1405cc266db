"""HTTP details the hub server shares between its routes: JSON answers, ETags, Range, file bodies,
request bodies read within a limit.

JSON bodies are ``json.dumps(obj) + "\\n"`` exactly as the real 0-hub (Flask) writes them, so our
answers are byte-identical to its, not merely equal once parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from zos_upgrade.hub.models import HubError

__all__ = [
    "FLASK_404_HTML",
    "BodyTooLarge",
    "api_error",
    "api_success",
    "download_headers",
    "file_etag",
    "file_response",
    "json_response",
    "limited_stream",
    "names_etag",
    "not_modified",
    "open_regular",
    "read_limited",
    "text_response",
]

# what the real hub (Flask's default page) answers for an unknown repository on /api/flist/<repo>
FLASK_404_HTML = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>404 Not Found</title>\n'
    "<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL "
    "manually please check your spelling and try again.</p>\n"
)
_CORS = {"Access-Control-Allow-Origin": "*"}
_CHUNK = 256 * 1024
_SMALL_FILE = 4 * 1024 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class BodyTooLarge(HubError):
    """A request body is larger than the hub accepts: HTTP 413."""


def body_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def file_etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def not_modified(request: Request, etag: str) -> bool:
    """True when the request's ``If-None-Match`` names ``etag`` (weak comparison, ``*`` matches)."""
    return names_etag(request.headers.get("if-none-match"), etag)


def names_etag(header: str | None, etag: str) -> bool:
    """``If-None-Match``'s rule: ``header`` lists ``etag`` (weak comparison) or is ``*``."""
    if not header:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _answer(request: Request, body: bytes, status: int, media_type: str) -> Response:
    etag = body_etag(body)
    headers = {"ETag": etag, **_CORS}
    if status == 200 and not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, status_code=status, media_type=media_type, headers=headers)


def json_response(request: Request, obj: Any, status: int = 200) -> Response:
    return _answer(request, (json.dumps(obj) + "\n").encode(), status, "application/json")


def text_response(request: Request, text: str, status: int = 200, media_type: str = "text/plain") -> Response:
    return _answer(request, text.encode(), status, media_type)


def api_error(request: Request, message: str, status: int) -> Response:
    return json_response(request, {"status": "error", "message": message}, status)


def api_success(request: Request, payload: dict[str, Any] | None = None, status: int = 200) -> Response:
    reply: dict[str, Any] = {"status": "success"}
    if payload:
        reply["payload"] = payload
    return json_response(request, reply, status)


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` inclusive for one satisfiable range; ``None`` to serve it all; ``"416"``."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges or another unit: RFC 9110 lets us answer with the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            return "416"
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        return "416"
    if last and int(last) < start:
        return None  # invalid: ignore
    return start, end


async def file_response(
    request: Request, fd: int, st: os.stat_result, media_type: str, etag: str,
    extra: Mapping[str, str] | None = None,
) -> Response:
    """Serve an open file (closed here); ``ETag``, ``If-None-Match``, one ``Range``, ``HEAD``;
    ``extra`` headers on every answer.

    The caller opened the file before calling, so a concurrent rename over the name keeps serving
    the inode the request started with: a download never mixes two versions.
    """
    size = st.st_size
    headers = {"ETag": etag, "Accept-Ranges": "bytes", **_CORS, **(extra or {})}
    try:
        if not_modified(request, etag):
            os.close(fd)
            return Response(status_code=304, headers=headers)
        wanted = parse_range(request.headers.get("range"), size)
        if request.headers.get("if-range") not in (None, etag):
            wanted = None  # the client's partial copy is of another version: send it all
        if wanted == "416":
            os.close(fd)
            headers["Content-Range"] = f"bytes */{size}"
            return Response(status_code=416, headers=headers)
        status = 200
        start, end = 0, size - 1
        if isinstance(wanted, tuple):
            start, end = wanted
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            os.close(fd)
            return Response(status_code=status, headers=headers, media_type=media_type)
        if length <= _SMALL_FILE:
            data = await anyio.to_thread.run_sync(os.pread, fd, length, start)
            os.close(fd)
            response = Response(data, status_code=status, media_type=media_type, headers=headers)
            return response
    except BaseException:
        os.close(fd)
        raise
    return StreamingResponse(
        _stream(fd, start, length), status_code=status, media_type=media_type, headers=headers
    )


async def _stream(fd: int, start: int, length: int) -> AsyncIterator[bytes]:
    try:
        offset, left = start, length
        while left > 0:
            chunk = await anyio.to_thread.run_sync(os.pread, fd, min(_CHUNK, left), offset)
            if not chunk:
                break  # the file shrank under us: the client sees a short body and retries
            offset += len(chunk)
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)


def download_headers(name: str, st: os.stat_result) -> dict[str, str]:
    """What the real 0-hub (Flask's ``send_from_directory``) sends with an flist download: the name
    asked for, the file's mtime, and no caching without revalidation."""
    # a header is latin-1: a name beyond ASCII goes percent-encoded in RFC 6266's filename*
    disposition = (f"inline; filename={_header_value(name)}" if name.isascii()
                   else f"inline; filename*=UTF-8''{quote(name, safe='')}")
    return {
        "Content-Disposition": disposition,
        "Last-Modified": formatdate(int(st.st_mtime), usegmt=True),
        "Cache-Control": "no-cache",
    }


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _header_value(value: str) -> str:
    """``value`` bare when it is an HTTP token, else quoted (as Werkzeug writes header options)."""
    if value and all(c in _TOKEN for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def open_regular(path: Path) -> int | None:
    """Open a regular file for reading without following a final symlink; ``None`` if it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


async def limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The request body, chunk by chunk; raises :class:`BodyTooLarge` once it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes is over the {limit} bytes allowed")
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(f"request body is over the {limit} bytes allowed")
        yield chunk


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole request body, if it is at most ``limit`` bytes (else :class:`BodyTooLarge`)."""
    return b"".join([chunk async for chunk in limited_stream(request, limit)])
