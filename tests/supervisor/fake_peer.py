"""A hostile or broken supervisor on a unix socket: records what it received, answers as told."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

Respond = Callable[[socket.socket, "FakePeer"], None]


class FakePeer:
    def __init__(self, path: Path, respond: Respond) -> None:
        self.path = path
        self.respond = respond
        self.received = bytearray()
        self.connections = 0
        self.sent = 0
        self.release = threading.Event()  # a hanging responder waits on this
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _read_request(self, conn: socket.socket) -> None:
        # read whatever the client sends until it pauses: closing with unread bytes would reset
        conn.settimeout(0.15)
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                self.received += chunk

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                self._read_request(conn)
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    self.respond(conn, self)

    def close(self) -> None:
        self._stop.set()
        self.release.set()
        self._thread.join(5)
        self._sock.close()


@contextlib.contextmanager
def fake_peer(path: Path, respond: Respond) -> Iterator[FakePeer]:
    peer = FakePeer(path, respond)
    try:
        yield peer
    finally:
        peer.close()


def send(data: bytes) -> Respond:
    def respond(conn: socket.socket, peer: FakePeer) -> None:
        conn.sendall(data)
        peer.sent += len(data)

    return respond


def hang(conn: socket.socket, peer: FakePeer) -> None:
    peer.release.wait(10)


def stream(prefix: bytes, total: int = 100 * 1024 * 1024) -> Respond:
    """Send ``prefix`` then filler up to ``total`` bytes, stopping when the client hangs up."""
    chunk = b"A" * (1 << 20)

    def respond(conn: socket.socket, peer: FakePeer) -> None:
        conn.sendall(prefix)
        peer.sent += len(prefix)
        while peer.sent < total:
            conn.sendall(chunk)
            peer.sent += len(chunk)

    return respond
