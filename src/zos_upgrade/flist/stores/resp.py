"""A blocking RESP2 connection that pipelines: many commands sent in one write, their replies read back.

The pack uploads blocks from worker threads (:meth:`ZdbStore.upload_missing`): one connection per
thread, one ``EXISTS`` batch and one ``SET`` batch per round trip instead of two round trips through
the event loop per block. Values go out with ``sendmsg`` as a scatter list (no copy of a 512 KiB
block into a command buffer), and a socket call releases the GIL, so two threads send in parallel.

Replies are checked as the hostile input they may be: a bulk longer than ``max_bulk``, a line longer
than ``_MAX_LINE`` or a type byte RESP2 does not have is a :class:`RespProtocolError`; an error reply
is returned as :class:`RespError` in its slot for the caller to type (0-db's words, zdb_errors.py).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from zos_upgrade.flist.stores.base import StoreError

__all__ = ["Reply", "RespConnection", "RespError", "RespProtocolError"]

_MAX_LINE = 4096  # a status, error or length line; 0-db's longest is a short sentence
_CRLF = b"\r\n"
# Linux only; elsewhere replies just wait for the delayed ACK
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class RespProtocolError(StoreError):
    """The server's answer is not RESP2 we can accept (the connection is unusable after it)."""


class RespError:
    """An error reply (``-...``), in the slot of the command it answers."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"


Reply = int | bytes | str | None | RespError


class RespConnection:
    """One TCP connection to a RESP2 server; not thread-safe (each thread holds its own)."""

    def __init__(self, host: str, port: int, *, timeout: float, max_bulk: int) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._max_bulk = max_bulk
        self._buf = bytearray()

    def close(self) -> None:
        self._sock.close()

    def pipeline(self, commands: Sequence[Sequence[bytes]]) -> list[Reply]:
        """Send every command in one go, then read one reply per command, in order."""
        parts: list[bytes] = []
        for args in commands:
            parts.append(b"*%d\r\n" % len(args))
            for arg in args:
                parts += (b"$%d\r\n" % len(arg), arg, _CRLF)
        self._send(parts)
        return [self._reply() for _ in commands]

    def _send(self, parts: list[bytes]) -> None:
        # sendmsg may take part of the list: drop what went out and send the rest
        views = [memoryview(p) for p in parts]
        while views:
            sent = self._sock.sendmsg(views[:512])  # IOV_MAX is 1024 on Linux
            while sent and views:
                if sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][sent:]
                    sent = 0

    def _fill(self) -> None:
        # 0-db writes each reply on its own with Nagle on: the second reply of a pipeline waits for our
        # ACK of the first, which Linux delays ~40 ms unless asked to ACK now (it forgets after a while,
        # so before every read). Measured: 16 pipelined SETs of 330 KB, 48 ms without, 3.3 ms with.
        if _QUICKACK is not None:
            self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self._buf += data

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(_CRLF)
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[:end + 2]
                return line
            if len(self._buf) > _MAX_LINE:
                raise RespProtocolError(f"a reply line longer than {_MAX_LINE} bytes")
            self._fill()

    def _reply(self) -> Reply:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return _int(rest)
        if kind == b"$":
            length = _int(rest)
            if length == -1:
                return None
            if not 0 <= length <= self._max_bulk:
                raise RespProtocolError(f"a bulk reply of {length} bytes (at most {self._max_bulk} expected)")
            while len(self._buf) < length + 2:
                self._fill()
            if self._buf[length:length + 2] != _CRLF:
                raise RespProtocolError("a bulk reply not ended by CRLF")
            value = bytes(self._buf[:length])
            del self._buf[:length + 2]
            return value
        raise RespProtocolError(f"a reply starting with {line[:16]!r} (expected one of + - : $)")


def _int(text: bytes) -> int:
    if not text or len(text) > 20 or not text.lstrip(b"-").isdigit():
        raise RespProtocolError(f"{text[:24]!r} is not a RESP integer")
    return int(text)
