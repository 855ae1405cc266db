"""XML-RPC over supervisord's unix socket: the transport under :class:`SupervisordClient`.

One HTTP/1.0 POST per call on a fresh connection, on the event loop: no worker thread per call (a
transaction makes about twenty calls, and a thread hop cost more than the call itself). The reply
is framed by the daemon's own HTTP client (``leanhttp.read_response``); the whole call, not just
each read, must end within ``timeout`` (a peer trickling a byte at a time would hold the call
forever), and the reply is read with a size limit. ``xmlrpc.client`` (which loads
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

from zos_upgrade.leanhttp import MAX_HEAD_BYTES, LeanHTTPError, read_response
from zos_upgrade.supervisor._socket import connect_error
from zos_upgrade.supervisor.errors import ProtocolError, SupervisorUnavailable

__all__ = ["call"]

_WHAT = "supervisord"


async def call(socket_path: Path, method: str, args: tuple[Any, ...], where: str, *, timeout: float,
               max_reply: int) -> Any:
    """One call; an ``xmlrpc.client.Fault`` passes through, every other failure is the supervisor
    layer's typed error naming ``where``."""
    body = xmlrpc.client.dumps(args, method, allow_none=True).encode()
    request = (b"POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nUser-Agent: zos-upgrade\r\n"
               b"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(socket_path, request, timeout, max_reply)
    except xmlrpc.client.Fault:
        raise
    except ProtocolError as exc:
        raise ProtocolError(f"{where}: {exc}") from None
    except TimeoutError:
        raise SupervisorUnavailable(f"{where}: no reply within {timeout}s") from None
    except _ConnectFailed as failed:
        raise connect_error(failed.error, socket_path, _WHAT) from None
    except (LeanHTTPError, ConnectionError) as exc:
        raise ProtocolError(f"{where}: broken or incomplete HTTP reply: {exc}") from None
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError) as exc:
        raise ProtocolError(f"{where}: reply is not valid XML-RPC: {exc}") from None
    except OSError as exc:
        raise SupervisorUnavailable(f"{where}: {exc}") from None


class _ConnectFailed(Exception):
    """``connect()`` itself failed (as opposed to the connection breaking later)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


async def _exchange(socket_path: Path, request: bytes, timeout: float, max_reply: int) -> Any:
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=MAX_HEAD_BYTES)
    except OSError as exc:
        raise _ConnectFailed(exc) from None
    try:
        writer.write(request)
        await writer.drain()
        # the call's own deadline (started first) ends a slow peer before a read's would
        response = await read_response(reader, "POST", timeout)
        if response.status_code != 200:
            raise ProtocolError(f"HTTP {response.status_code}")
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_reply:
            raise ProtocolError(f"reply larger than {max_reply} bytes ({length} announced); refused")
        parser, unmarshaller = xmlrpc.client.getparser()
        total = 0
        async for piece in response.aiter_raw():
            total += len(piece)
            if total > max_reply:
                raise ProtocolError(f"reply larger than {max_reply} bytes; refused")
            parser.feed(piece)
        parser.close()
        result = unmarshaller.close()  # raises the Fault of a fault reply
        return result[0] if len(result) == 1 else result
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
