"""XML-RPC over supervisord's unix socket: the transport under :class:`SupervisordClient`.

One HTTP/1.0 POST per call on a fresh connection, on the event loop: no worker thread per call (a
transaction makes about twenty calls, and a thread hop cost more than the call itself). The whole
call, not just each read, must end within ``timeout`` (a peer trickling a byte at a time would
hold the call forever), and the reply is read with a size limit. ``xmlrpc.client`` (which loads
``http.client`` and OpenSSL) is imported with this module, which the client imports at its first
call: a daemon that builds its supervisor client and never calls it pays nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import xmlrpc.client
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from zos_upgrade.supervisor._socket import connect_error
from zos_upgrade.supervisor.errors import ProtocolError, SupervisorUnavailable

__all__ = ["call"]

_WHAT = "supervisord"
_MAX_HEAD_LINE = 8 * 1024  # a status or header line longer than this is not supervisord's
_MAX_HEADERS = 64
_CHUNK = 65536


async def call(socket_path: Path, method: str, args: tuple[Any, ...], where: str, *, timeout: float,
               max_reply: int) -> Any:
    """One call; an ``xmlrpc.client.Fault`` passes through, every other failure is the supervisor
    layer's typed error naming ``where``."""
    body = xmlrpc.client.dumps(args, method, allow_none=True).encode()
    request = (b"POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nUser-Agent: zos-upgrade\r\n"
               b"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(socket_path, request, max_reply)
    except xmlrpc.client.Fault:
        raise
    except ProtocolError as exc:
        raise ProtocolError(f"{where}: {exc}") from None
    except TimeoutError:
        raise SupervisorUnavailable(f"{where}: no reply within {timeout}s") from None
    except _ConnectFailed as failed:
        raise connect_error(failed.error, socket_path, _WHAT) from None
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise ProtocolError(f"{where}: broken or incomplete HTTP reply: {exc!r}") from None
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError) as exc:
        raise ProtocolError(f"{where}: reply is not valid XML-RPC: {exc}") from None
    except OSError as exc:
        raise SupervisorUnavailable(f"{where}: {exc}") from None


class _ConnectFailed(Exception):
    """``connect()`` itself failed (as opposed to the connection breaking later)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


async def _exchange(socket_path: Path, request: bytes, max_reply: int) -> Any:
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=_MAX_HEAD_LINE)
    except OSError as exc:
        raise _ConnectFailed(exc) from None
    try:
        writer.write(request)
        await writer.drain()
        length = await _read_head(reader)
        if length is not None and length > max_reply:
            raise ProtocolError(f"reply larger than {max_reply} bytes ({length} announced); refused")
        return await _read_body(reader, length, max_reply)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> int | None:
    """The status line and headers of a 200 reply; its Content-Length (None: to the end)."""
    status = await _line(reader)
    if not status:
        raise ProtocolError("supervisord closed the connection without a reply")
    parts = status.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP reply: {status[:80]!r}")
    code, reason = int(parts[1]), parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
    length: int | None = None
    for _ in range(_MAX_HEADERS):
        line = await _line(reader)
        if line in (b"", b"\r\n", b"\n"):
            break
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"bad HTTP header line {line[:80]!r}")
        header = name.strip().lower()
        if header == b"content-length":
            if not value.strip().isdigit():
                raise ProtocolError(f"bad Content-Length {value.strip()[:40]!r}")
            length = int(value)
        elif header == b"transfer-encoding" and value.strip().lower() != b"identity":
            raise ProtocolError(f"unsupported Transfer-Encoding {value.strip()[:40]!r}")
    else:
        raise ProtocolError(f"more than {_MAX_HEADERS} HTTP header lines")
    if code != 200:
        raise ProtocolError(f"HTTP {code} {reason}".rstrip())
    return length


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"an HTTP head line longer than {_MAX_HEAD_LINE} bytes") from None


async def _read_body(reader: asyncio.StreamReader, length: int | None, max_reply: int) -> Any:
    """Feed the body to the XML-RPC parser as it arrives; the call's single result."""
    parser, unmarshaller = xmlrpc.client.getparser()
    total = 0
    while length is None or total < length:
        chunk = await reader.read(_CHUNK if length is None else min(_CHUNK, length - total))
        if not chunk:
            if length is not None:
                raise asyncio.IncompleteReadError(b"", length - total)
            break
        total += len(chunk)
        if total > max_reply:
            raise ProtocolError(f"reply larger than {max_reply} bytes; refused")
        parser.feed(chunk)
    parser.close()
    result = unmarshaller.close()  # raises the Fault of a fault reply
    return result[0] if len(result) == 1 else result
