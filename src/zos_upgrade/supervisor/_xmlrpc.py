"""XML-RPC over supervisord's unix socket: the transport under :class:`SupervisordClient`.

Apart from the client so that only a call loads ``xmlrpc.client`` (it imports ``http.client``,
which loads OpenSSL): a daemon that builds its supervisor client and never calls it pays nothing.
"""

from __future__ import annotations

import http.client
import socket
import time
import xmlrpc.client
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from zos_upgrade.supervisor._socket import connect_error
from zos_upgrade.supervisor.errors import ProtocolError, SupervisorUnavailable

__all__ = ["call"]

_WHAT = "supervisord"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over a unix socket: a fresh connection per call, replies read with a size limit."""

    def __init__(self, path: Path, timeout: float, max_reply: int) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout
        self._max = max_reply
        # One transport serves one call: the whole call, not just each read, must end in time,
        # or a peer trickling a byte at a time would pin the worker thread forever.
        self._deadline = time.monotonic() + timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = _UnixConnection(self._path, self._timeout)
        self._connection = (host, conn)
        return conn

    def parse_response(self, response: http.client.HTTPResponse) -> Any:
        parser, unmarshaller = self.getparser()
        total = 0
        while data := response.read1(65536):
            if time.monotonic() > self._deadline:
                raise TimeoutError("reply not complete in time")
            total += len(data)
            if total > self._max:
                raise ProtocolError(f"reply larger than {self._max} bytes; refused")
            parser.feed(data)
        parser.close()
        return unmarshaller.close()


def call(socket_path: Path, method: str, args: tuple[Any, ...], where: str, *, timeout: float,
         max_reply: int) -> Any:
    """One call on a fresh connection; an ``xmlrpc.client.Fault`` passes through, every other
    failure is the supervisor layer's typed error."""
    proxy = xmlrpc.client.ServerProxy(
        "http://localhost/RPC2", transport=_UnixTransport(socket_path, timeout, max_reply),
        allow_none=True,
    )
    try:
        with proxy:
            return getattr(proxy, method)(*args)
    except xmlrpc.client.Fault:
        raise
    except ProtocolError as exc:
        raise ProtocolError(f"{where}: {exc}") from None
    except TimeoutError:
        raise SupervisorUnavailable(f"{where}: no reply within {timeout}s") from None
    except (FileNotFoundError, PermissionError, ConnectionRefusedError) as exc:
        raise connect_error(exc, socket_path, _WHAT) from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise ProtocolError(f"{where}: broken or incomplete HTTP reply: {exc!r}") from None
    except xmlrpc.client.ProtocolError as exc:
        raise ProtocolError(f"{where}: HTTP {exc.errcode} {exc.errmsg}") from None
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError) as exc:
        raise ProtocolError(f"{where}: reply is not valid XML-RPC: {exc}") from None
    except OSError as exc:
        raise SupervisorUnavailable(f"{where}: {exc}") from None
