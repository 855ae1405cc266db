"""``http://host/path`` read by a file-writer process itself: blocking GETs over keep-alive sockets.

A first install from a remote store used to have the parent fetch every block on its event loop
(httpx, a Future and a thread hop per block) and hand it to a child through the block cache: the
parent's loop was the bottleneck and every block was written twice. A child that fetches its own
files' blocks runs fetch, verify, decrypt, inflate and write in one process per core, with no
second copy. This is the smallest client that does it: stdlib sockets only (no asyncio, no httpx:
a child starts in a third of the time), the same URLs as ``HttpStore`` (``<url>/<xx>/<hex>``,
on 404 ``<url>/<hex>``), the same size bound.

It only handles what the common case needs; anything else is :class:`RemoteUnavailable`, and the
parent fetches that file's blocks through ``HttpStore`` (retries, proxies, every framing):
a refused or dropped connection (after one retry on a fresh connection), a timeout, a status other
than 200 or 404, a malformed or oversized answer.

``prefetch`` names the blocks the process will read next, in order: a thread fetches them ahead on a
connection of its own (at most ``ahead`` held at a time) while the caller decrypts and writes, so
the network wait overlaps the CPU work instead of adding to it (the socket calls release the GIL).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
from collections.abc import Iterable
from typing import BinaryIO, cast
from urllib.parse import urlsplit

from zos_upgrade.flist.stores.base import MAX_STORED_BYTES, BlockMissing, StoreError, block_hex

__all__ = ["BlockingHttpReader", "RemoteUnavailable"]

_MAX_HEAD_LINE = 8 * 1024
_MAX_HEAD_LINES = 100
_MAX_ERROR_BODY = 64 * 1024  # a 404's body is read (to reuse the connection) up to this much


class RemoteUnavailable(StoreError):
    """The server could not be read the simple way (down, slow, an answer this client does not take):
    the parent fetches the block instead."""


class _Connection:
    """One keep-alive HTTP/1.1 connection; ``get`` is (status, body or None for a 404)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._address = (host, port)
        self._host_header = f"{host}:{port}".encode("ascii")
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._file: BinaryIO | None = None
        self._reused = False

    def get(self, path: str) -> tuple[int, bytes | None]:
        for attempt in (0, 1):
            fresh = self._sock is None
            if fresh:
                self._open()
            try:
                return self._exchange(path)
            except (OSError, _Dropped) as exc:
                self.close()
                # a reused connection the server closed while idle: once more on a new one (GET is
                # idempotent, RFC 9112 9.3.1); a fresh connection that fails is the server's state
                if fresh or attempt:
                    raise RemoteUnavailable(f"GET {path}: {exc}") from exc
        raise AssertionError("unreachable")

    def _open(self) -> None:
        try:
            sock = socket.create_connection(self._address, timeout=self._timeout)
        except OSError as exc:
            host, port = self._address
            raise RemoteUnavailable(f"cannot connect to {host}:{port}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._file = sock, cast(BinaryIO, sock.makefile("rb", buffering=256 * 1024))

    def _exchange(self, path: str) -> tuple[int, bytes | None]:
        assert self._sock is not None and self._file is not None
        self._sock.sendall(b"GET " + path.encode("ascii") + b" HTTP/1.1\r\nHost: " + self._host_header
                           + b"\r\nAccept-Encoding: identity\r\nUser-Agent: zos-upgrade\r\n\r\n")
        status_line = self._file.readline(_MAX_HEAD_LINE + 1)
        if not status_line:
            raise _Dropped("connection closed before an answer")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
            raise RemoteUnavailable(f"GET {path}: not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(parts[1])
        length, chunked, keep_alive = self._head(parts[0] == b"HTTP/1.1", path)
        if status == 200:
            body = self._body(length, chunked, MAX_STORED_BYTES, path)
        elif status == 404:
            self._body(length, chunked, _MAX_ERROR_BODY, path)
            body = None
        else:
            self.close()
            raise RemoteUnavailable(f"GET {path}: answered {status}")
        if not keep_alive or (length is None and not chunked):
            self.close()
        return status, body

    def _head(self, http11: bool, path: str) -> tuple[int | None, bool, bool]:
        """Content-Length (None when absent), chunked or not, keep-alive or not."""
        assert self._file is not None
        length: int | None = None
        chunked, keep_alive = False, http11
        for _ in range(_MAX_HEAD_LINES):
            line = self._file.readline(_MAX_HEAD_LINE + 1)
            if line in (b"\r\n", b"\n"):
                return length, chunked, keep_alive
            if not line or len(line) > _MAX_HEAD_LINE or b":" not in line:
                raise RemoteUnavailable(f"GET {path}: malformed header line {line[:80]!r}")
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise RemoteUnavailable(f"GET {path}: bad Content-Length {value[:40]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value == b"chunked"
                if not chunked:
                    raise RemoteUnavailable(f"GET {path}: unsupported Transfer-Encoding {value[:40]!r}")
            elif name == b"connection":
                tokens = {t.strip() for t in value.split(b",")}
                keep_alive = b"keep-alive" in tokens if not http11 else b"close" not in tokens
        raise RemoteUnavailable(f"GET {path}: more than {_MAX_HEAD_LINES} header lines")

    def _body(self, length: int | None, chunked: bool, cap: int, path: str) -> bytes:
        assert self._file is not None
        if chunked:
            return self._chunks(cap, path)
        if length is None:  # framed by the end of the connection
            data = self._file.read(cap + 1)
        else:
            if length > cap:
                raise RemoteUnavailable(f"GET {path}: {length} bytes announced, more than the {cap} allowed")
            data = self._file.read(length)
            if len(data) != length:
                raise _Dropped(f"connection closed after {len(data)} of {length} body bytes")
        if len(data) > cap:
            raise RemoteUnavailable(f"GET {path}: more than the {cap} bytes allowed")
        return data

    def _chunks(self, cap: int, path: str) -> bytes:
        assert self._file is not None
        out = bytearray()
        while True:
            size_line = self._file.readline(_MAX_HEAD_LINE + 1).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise RemoteUnavailable(f"GET {path}: bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                while self._file.readline(_MAX_HEAD_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            if len(out) + size > cap:
                raise RemoteUnavailable(f"GET {path}: more than the {cap} bytes allowed")
            piece = self._file.read(size + 2)
            if len(piece) != size + 2:
                raise _Dropped("connection closed inside a chunk")
            out += piece[:size]

    def close(self) -> None:
        file, sock, self._file, self._sock = self._file, self._sock, None, None
        with contextlib.suppress(OSError):
            if file is not None:
                file.close()
            if sock is not None:
                sock.close()


class _Dropped(Exception):
    """The connection ended where an answer should be."""


class BlockingHttpReader:
    """Blocks of the ``http://`` store at ``url``, read without the event loop (a ``LocalStore``);
    ``prefetch`` fetches named blocks ahead on ``connections`` threads, at most ``ahead`` held."""

    def __init__(self, url: str, *, timeout: float = 30.0, ahead: int = 8, connections: int = 3) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise StoreError(f"{url}: a file-writer process reads only plain http:// stores")
        self.url = url
        self._host, self._port = parts.hostname, parts.port or 80
        self._path = parts.path.rstrip("/")
        self._timeout = timeout
        self._conn = _Connection(self._host, self._port, timeout)
        self._ahead = max(1, ahead)
        self._connections = max(1, connections)
        # prefetch state, guarded by _lock; every id asked for ahead gets a rising sequence number:
        # queued (not started), being fetched, answered and not read yet
        self._lock = threading.Condition()
        self._seq = 0
        self._queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self._fetching: set[bytes] = set()
        self._ready: dict[bytes, tuple[int, tuple[bytes, str | None] | BaseException]] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    def read_block_file(self, block_id: bytes) -> tuple[bytes, str | None]:
        got: tuple[bytes, str | None] | BaseException | None = None
        with self._lock:
            while block_id in self._fetching:
                self._lock.wait()
            if block_id in self._ready:
                seq, got = self._ready.pop(block_id)
                self._skip_before(seq)
            else:
                for seq, queued in self._queue:
                    if queued == block_id:  # not started yet: this thread fetches it now
                        self._queue.remove((seq, queued))
                        self._skip_before(seq)
                        break
            self._lock.notify_all()  # room for more ahead
        if got is None:
            return self._fetch(self._conn, block_id)
        if isinstance(got, BaseException):
            raise got
        return got

    def _skip_before(self, seq: int) -> None:
        """Blocks asked for ahead of ``seq`` and not read by now were skipped by the reader (cached
        meanwhile, or their file failed): dropped, so they never hold the prefetchers' room."""
        for block_id, (earlier, _result) in list(self._ready.items()):
            if earlier < seq:
                del self._ready[block_id]
        while self._queue and self._queue[0][0] < seq:
            self._queue.popleft()

    def prefetch(self, block_ids: Iterable[bytes]) -> None:
        """Fetch ``block_ids`` ahead, in that order (the order they will be read)."""
        with self._lock:
            for block_id in block_ids:
                self._seq += 1
                self._queue.append((self._seq, block_id))
            while len(self._threads) < self._connections:
                thread = threading.Thread(target=self._prefetcher, name="block-prefetch", daemon=True)
                thread.start()
                self._threads.append(thread)
            self._lock.notify_all()

    def forget(self) -> None:
        """Drop whatever was asked for ahead and not read (the job before ended)."""
        with self._lock:
            self._queue.clear()
            self._ready.clear()
            self._lock.notify_all()

    def _prefetcher(self) -> None:
        conn = _Connection(self._host, self._port, self._timeout)
        try:
            while True:
                with self._lock:
                    while not self._closed and (
                            not self._queue or len(self._ready) + len(self._fetching) >= self._ahead):
                        self._lock.wait()
                    if self._closed:
                        return
                    seq, block_id = self._queue.popleft()
                    self._fetching.add(block_id)
                result: tuple[bytes, str | None] | BaseException
                try:
                    result = self._fetch(conn, block_id)
                except Exception as exc:  # handed to the reader, who raises it
                    result = exc
                with self._lock:
                    self._fetching.discard(block_id)
                    self._ready[block_id] = (seq, result)
                    self._lock.notify_all()
        finally:
            conn.close()

    def _fetch(self, conn: _Connection, block_id: bytes) -> tuple[bytes, str | None]:
        name = block_hex(block_id)
        for path in (f"{self._path}/{name[:2]}/{name}", f"{self._path}/{name}"):
            status, body = conn.get(path)
            if status == 200 and body is not None:
                return body, None  # fetched over the network: no file to link into the cache
        raise BlockMissing(block_id, [self.url])

    # the BlockStore side, so a child's Router can hold it beside dir:// stores (it only ever reads
    # through ``read_block_file``; these serve the protocol's other callers honestly)
    async def get(self, block_id: bytes) -> bytes:
        import asyncio

        return (await asyncio.to_thread(self.read_block_file, block_id))[0]

    async def put(self, block_id: bytes, data: bytes) -> None:
        raise StoreError(f"{self.url}: http(s) stores are read-only; cannot write block {block_id.hex()}")

    async def has(self, block_id: bytes) -> bool:
        try:
            await self.get(block_id)
        except BlockMissing:
            return False
        return True

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._conn.close()
