"""A small HTTP/1.1 client on asyncio streams, for the daemon's polls (issue 19: an idle daemon).

A watcher asks its hub a handful of small conditional GETs a minute; loading httpx (and httpcore,
anyio, h11, idna, certifi) for that costs an idle daemon several MiB it never gives back. This
client does only what a poll needs: one request per connection (``Connection: close``; polls are
seconds apart), ``Content-Length``, chunked or read-to-close bodies, redirects for GET and HEAD.

It is the transport under :func:`zos_upgrade.net.fetch`, which keeps every rule of a fetch — the
retries, the per-attempt and total deadlines, the minimum rate, the size cap on decoded bytes, the
content decoding, the typed errors — so an answer read here is checked exactly like one read by
httpx. What is checked here is the framing: a head larger than :data:`MAX_HEAD_BYTES` or with more
than :data:`MAX_HEADERS` fields, a malformed status line or header, a bad chunk size, a body shorter
than it declared. Every such failure, a refused connection and a read that takes longer than the
client's ``timeout`` raise :class:`LeanHTTPError` (``fetch`` retries it as a transport failure).

Proxies: none. A node configured for one (``HTTP_PROXY`` and friends) polls through httpx instead
(:func:`proxy_configured`), which honours them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urljoin, urlsplit

if TYPE_CHECKING:
    import ssl

__all__ = ["MAX_HEADERS", "MAX_HEAD_BYTES", "LeanClient", "LeanHTTPError", "LeanResponse",
           "proxy_configured", "read_response"]

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
_MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
_T = TypeVar("_T")


class LeanHTTPError(Exception):
    """A transport failure: no connection, a timeout, or an answer that is not valid HTTP/1.1."""


def proxy_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment names a proxy (httpx would use it; this client cannot)."""
    env = os.environ if environ is None else environ
    return any(env.get(name) or env.get(name.upper()) for name in _PROXY_VARIABLES)


class _Headers(dict[str, str]):
    """Response fields by lower-case name; repeated fields joined with ``", "`` (RFC 9110 5.3)."""

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)


class LeanResponse:
    """An answer whose head is read; ``aiter_raw()`` yields its body with the transfer coding
    undone and the content coding kept (what httpx's ``aiter_raw`` yields)."""

    def __init__(self, status_code: int, headers: _Headers, reader: asyncio.StreamReader,
                 timeout: float, method: str) -> None:
        self.status_code = status_code
        self.headers = headers
        self._reader = reader
        self._timeout = timeout
        self._method = method

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        if self._method == "HEAD" or self.status_code in (204, 304):
            return
        coding = (self.headers.get("transfer-encoding") or "").lower()
        if coding:
            if coding.replace(" ", "") != "chunked":
                raise LeanHTTPError(f"unsupported Transfer-Encoding {coding!r}")
            async for piece in self._chunked():
                yield piece
            return
        length = self.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise LeanHTTPError(f"bad Content-Length {length!r}")
            left = int(length)
            while left:
                piece = await _io(self._reader.read(min(left, _CHUNK)), self._timeout)
                if not piece:
                    raise LeanHTTPError(f"body ends {left} bytes before its Content-Length")
                left -= len(piece)
                yield piece
            return
        while piece := await _io(self._reader.read(_CHUNK), self._timeout):  # framed by the close
            yield piece

    async def _chunked(self) -> AsyncIterator[bytes]:
        while True:
            line = await _line(self._reader, self._timeout)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise LeanHTTPError(f"bad chunk size {size_text[:20]!r}") from None
            if size < 0:
                raise LeanHTTPError(f"bad chunk size {size_text[:20]!r}")
            if size == 0:
                for _ in range(MAX_HEADERS + 1):  # the trailer, ignored, ends with an empty line
                    if not await _line(self._reader, self._timeout):
                        return
                raise LeanHTTPError(f"chunked trailer has more than {MAX_HEADERS} fields")
            left = size
            while left:
                piece = await _io(self._reader.read(min(left, _CHUNK)), self._timeout)
                if not piece:
                    raise LeanHTTPError("chunked body ends inside a chunk")
                left -= len(piece)
                yield piece
            if await _line(self._reader, self._timeout):
                raise LeanHTTPError("chunk not followed by CRLF")


async def _io(job: Awaitable[_T], timeout: float) -> _T:
    """``job`` within ``timeout``; a timeout or a socket error is the transport's failure."""
    try:
        async with asyncio.timeout(timeout):
            return await job
    except TimeoutError:
        raise LeanHTTPError(f"no data within {timeout:g}s") from None
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise LeanHTTPError(f"{type(exc).__name__}: {exc}") from exc


async def _line(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """One CRLF-ended line without its end, at most MAX_HEAD_BYTES; b"" for the empty line."""
    try:
        async with asyncio.timeout(timeout):
            line = await reader.readuntil(b"\n")
    except TimeoutError:
        raise LeanHTTPError(f"no data within {timeout:g}s") from None
    except asyncio.LimitOverrunError:
        raise LeanHTTPError(f"a line of the answer is longer than {MAX_HEAD_BYTES} bytes") from None
    except asyncio.IncompleteReadError as exc:
        raise LeanHTTPError("connection closed in the middle of the answer's head") from exc
    except OSError as exc:
        raise LeanHTTPError(f"{type(exc).__name__}: {exc}") from exc
    return line.rstrip(b"\r\n") if line.endswith(b"\r\n") else line[:-1]


class LeanClient:
    """An asyncio HTTP/1.1 client with the surface :func:`zos_upgrade.net.fetch` uses: ``stream()``.

    ``timeout`` bounds connecting and every read; ``headers`` go with every request."""

    def __init__(self, *, timeout: float, headers: Mapping[str, str] | None = None,
                 user_agent: str = "zos-upgrade") -> None:
        self._timeout = timeout
        self._headers = {"User-Agent": user_agent, **(headers or {})}
        self._ssl: ssl.SSLContext | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def aclose(self) -> None:
        for writer in list(self._open):
            writer.close()
        self._open.clear()

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                     content: bytes | None = None) -> AsyncIterator[LeanResponse]:
        for _ in range(_MAX_REDIRECTS + 1):
            writer, response = await self._send(method, url, headers, content)
            try:
                location = response.headers.get("location")
                redirect = response.status_code in (301, 302, 303, 307, 308)
                if redirect and location and method in ("GET", "HEAD"):
                    url = urljoin(url, location)  # what httpx's follow_redirects does for a poll
                    continue
                yield response
                return
            finally:
                self._open.discard(writer)
                writer.close()
        raise LeanHTTPError(f"more than {_MAX_REDIRECTS} redirects")

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            import ssl  # here: OpenSSL loads at the first https URL, not in every poll (lazytls.py)

            # the CA bundle httpx verifies against, by httpx's own rule (SSL_CERT_FILE, SSL_CERT_DIR,
            # else certifi's), so both transports trust the same servers
            cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
            if cafile or capath:
                self._ssl = ssl.create_default_context(cafile=cafile or None,
                                                       capath=None if cafile else capath)
            else:
                try:
                    import certifi

                    self._ssl = ssl.create_default_context(cafile=certifi.where())
                except ImportError:
                    self._ssl = ssl.create_default_context()
        return self._ssl

    async def _send(self, method: str, url: str, headers: Mapping[str, str] | None,
                    content: bytes | None) -> tuple[asyncio.StreamWriter, LeanResponse]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LeanHTTPError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError as exc:
            raise LeanHTTPError(f"bad port in {url!r}") from exc
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(
                    parts.hostname, port, ssl=self._context() if tls else None, limit=MAX_HEAD_BYTES,
                    server_hostname=parts.hostname if tls else None)
        except TimeoutError:
            raise LeanHTTPError(f"no connection to {parts.netloc} within {self._timeout:g}s") from None
        except OSError as exc:  # ssl.SSLError is one
            raise LeanHTTPError(f"cannot connect to {parts.netloc}: {exc}") from exc
        self._open.add(writer)
        try:
            writer.write(self._head(method, parts.netloc, parts.path or "/", parts.query, headers, content))
            if content:
                writer.write(content)
            await _io(writer.drain(), self._timeout)
            return writer, await read_response(reader, method, self._timeout)
        except BaseException:
            self._open.discard(writer)
            writer.close()
            raise

    def _head(self, method: str, host: str, path: str, query: str, headers: Mapping[str, str] | None,
              content: bytes | None) -> bytes:
        fields = {"Host": host, **self._headers, **(headers or {}), "Connection": "close"}
        if content is not None or method in ("POST", "PUT"):
            fields["Content-Length"] = str(len(content or b""))
        for name, value in fields.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise LeanHTTPError(f"header {name!r} carries a line break or NUL")
        target = f"{path}?{query}" if query else path
        lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items()), "", ""]
        return "\r\n".join(lines).encode("latin-1")


async def read_response(reader: asyncio.StreamReader, method: str, timeout: float) -> LeanResponse:
    """The head of the answer ``reader`` carries to a ``method`` request (interim 1xx answers
    skipped), checked; its body is read from the response. Also for a connection this client
    did not open (supervisord's unix socket: ``supervisor/_xmlrpc.py``)."""
    while True:
        status_line = await _line(reader, timeout)
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit() or len(code) != 3:
            raise LeanHTTPError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        headers = _Headers()
        size = len(status_line)
        for count in range(MAX_HEADERS + 1):
            line = await _line(reader, timeout)
            if not line:
                break
            size += len(line)
            if count == MAX_HEADERS or size > MAX_HEAD_BYTES:
                raise LeanHTTPError(
                    f"answer head larger than {MAX_HEADERS} fields or {MAX_HEAD_BYTES} bytes")
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or not name.isascii():
                raise LeanHTTPError(f"malformed header line {line[:80]!r}")
            key, text = name.decode("ascii").lower(), value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        status = int(code)
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            continue
        return LeanResponse(status, headers, reader, timeout, method)
