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
Where the server offers it (our hub), the blocks asked for ahead travel several to a request
(``batch_wire``): our hub spent most of its CPU per request, not per byte. A server that answers the
batch GET with 404 (400, 405, 501, or a 200 of another content type) is asked block by block from
then on; a batch answer off the wire (a frame for another block, too long, too short, cut) is
:class:`RemoteUnavailable` for each of its blocks, like a bad single answer.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from typing import BinaryIO, NamedTuple, TypeVar, cast
from urllib.parse import urlsplit

from zos_upgrade.flist.stores.base import MAX_STORED_BYTES, BlockMissing, StoreError, block_hex
from zos_upgrade.flist.stores.batch_wire import (
    BATCH_NAME,
    CONTENT_TYPE,
    MAX_BATCH_IDS,
    BadBatch,
    frame_size,
    head_bytes,
    query,
)

__all__ = ["BlockingHttpReader", "RemoteUnavailable"]

_MAX_HEAD_LINE = 8 * 1024
_MAX_HEAD_LINES = 100
_MAX_ERROR_BODY = 64 * 1024  # a 404's body is read (to reuse the connection) up to this much
# what a server without the batch GET answers it with: the blocks are then fetched one by one
_NO_BATCH = frozenset((400, 404, 405, 501))

_T = TypeVar("_T")
# called with each block of a batch answer as it is read: its index in the batch, its stored bytes
# (None: the server does not hold it)
_Arrived = Callable[[int, bytes | None], None]


def _short(path: str) -> str:
    """``path`` for a message: a batch's names every id it asks for."""
    return path if len(path) <= 160 else path[:150] + "..."


class _Head(NamedTuple):
    length: int | None  # Content-Length, None when absent
    chunked: bool
    keep_alive: bool
    content_type: bytes


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
        return self._retried(path, self._exchange)

    def get_batch(self, path: str, block_ids: list[bytes], arrived: _Arrived) -> bool:
        """One batch GET of ``block_ids`` (``batch_wire``): ``arrived(index, stored bytes or None when
        not held)`` as each frame is read whole, in order; False when the server offers no batches."""
        return self._retried(path, lambda p: self._exchange_batch(p, block_ids, arrived))

    def _retried(self, path: str, exchange: Callable[[str], _T]) -> _T:
        for attempt in (0, 1):
            fresh = self._sock is None
            if fresh:
                self._open()
            try:
                return exchange(path)
            except (OSError, _Dropped) as exc:
                self.close()
                # a reused connection the server closed while idle: once more on a new one (GET is
                # idempotent, RFC 9112 9.3.1); a fresh connection that fails is the server's state
                if fresh or attempt:
                    raise RemoteUnavailable(f"GET {_short(path)}: {exc}") from exc
        raise AssertionError("unreachable")

    def _open(self) -> None:
        try:
            sock = socket.create_connection(self._address, timeout=self._timeout)
        except OSError as exc:
            host, port = self._address
            raise RemoteUnavailable(f"cannot connect to {host}:{port}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._file = sock, cast(BinaryIO, sock.makefile("rb", buffering=256 * 1024))

    def _request(self, path: str) -> tuple[int, _Head]:
        """Send a GET of ``path``; its status and head."""
        assert self._sock is not None and self._file is not None
        self._sock.sendall(b"GET " + path.encode("ascii") + b" HTTP/1.1\r\nHost: " + self._host_header
                           + b"\r\nAccept-Encoding: identity\r\nUser-Agent: zos-upgrade\r\n\r\n")
        status_line = self._file.readline(_MAX_HEAD_LINE + 1)
        if not status_line:
            raise _Dropped("connection closed before an answer")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
            raise RemoteUnavailable(f"GET {path}: not an HTTP/1.x status line: {status_line[:80]!r}")
        return int(parts[1]), self._head(parts[0] == b"HTTP/1.1", path)

    def _exchange(self, path: str) -> tuple[int, bytes | None]:
        status, head = self._request(path)
        if status == 200:
            body = self._body(head, MAX_STORED_BYTES, path)
        elif status == 404:
            self._body(head, _MAX_ERROR_BODY, path)
            body = None
        else:
            self.close()
            raise RemoteUnavailable(f"GET {path}: answered {status}")
        self._done(head)
        return status, body

    def _exchange_batch(self, path: str, block_ids: list[bytes], arrived: _Arrived) -> bool:
        status, head = self._request(path)
        if status in _NO_BATCH or (status == 200 and head.content_type != CONTENT_TYPE.encode()):
            # not offered (a store without batches, or a server answering every path with a page)
            if status == 200:
                self.close()
            else:
                self._body(head, _MAX_ERROR_BODY, path)
                self._done(head)
            return False
        if status != 200:
            self.close()
            raise RemoteUnavailable(f"GET {_short(path)}: answered {status}")
        if head.length is None or head.chunked:
            self.close()
            raise RemoteUnavailable(f"GET {_short(path)}: a batch answer without a Content-Length")
        try:
            self._frames(head.length, block_ids, arrived)
        except BadBatch as exc:
            self.close()
            raise RemoteUnavailable(f"GET {_short(path)}: {exc}") from exc
        self._done(head)
        return True

    def _frames(self, length: int, block_ids: list[bytes], arrived: _Arrived) -> None:
        """The frames of a batch answer of ``length`` bytes, one per id in order, each handed on as
        soon as it is read whole and its head checked (the block is decrypted while the rest
        arrive: its bytes are verified against its id there, like any block's)."""
        assert self._file is not None
        if length > sum(head_bytes(i) for i in block_ids) + len(block_ids) * MAX_STORED_BYTES:
            raise BadBatch(f"{length} bytes announced, more than {len(block_ids)} blocks can hold")
        left = length
        for index, block_id in enumerate(block_ids):
            want = head_bytes(block_id)
            if want > left:
                raise BadBatch(f"the answer ends before the frame of block {block_id.hex()}")
            frame = self._file.read(want)
            if len(frame) != want:
                raise _Dropped(f"connection closed inside the frame of block {block_id.hex()}")
            left -= want
            size = frame_size(frame, block_id, min(MAX_STORED_BYTES, left))
            if size is None:
                arrived(index, None)
                continue
            data = self._file.read(size)
            if len(data) != size:
                raise _Dropped(f"connection closed after {len(data)} of the {size} bytes of block "
                               f"{block_id.hex()}")
            left -= size
            arrived(index, data)
        if left:
            raise BadBatch(f"{left} bytes after the last frame")

    def _done(self, head: _Head) -> None:
        """After an answer read whole: keep the connection only if the server will."""
        if not head.keep_alive or (head.length is None and not head.chunked):
            self.close()

    def _head(self, http11: bool, path: str) -> _Head:
        """The header lines that frame the answer, read up to the blank line."""
        assert self._file is not None
        length: int | None = None
        chunked, keep_alive, content_type = False, http11, b""
        for _ in range(_MAX_HEAD_LINES):
            line = self._file.readline(_MAX_HEAD_LINE + 1)
            if line in (b"\r\n", b"\n"):
                return _Head(length, chunked, keep_alive, content_type)
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
            elif name == b"content-type":
                content_type = value
            elif name == b"connection":
                tokens = {t.strip() for t in value.split(b",")}
                keep_alive = b"keep-alive" in tokens if not http11 else b"close" not in tokens
        raise RemoteUnavailable(f"GET {path}: more than {_MAX_HEAD_LINES} header lines")

    def _body(self, head: _Head, cap: int, path: str) -> bytes:
        assert self._file is not None
        length = head.length
        if head.chunked:
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
    ``prefetch`` fetches named blocks ahead, at most ``ahead`` held: up to ``batch`` per request on
    one connection where the server offers batch GETs (``batch_wire``), else one per request on
    ``connections`` threads."""

    def __init__(self, url: str, *, timeout: float = 30.0, ahead: int = 48, connections: int = 3,
                 batch: int = 32) -> None:
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
        self._batch_ids = min(max(1, batch), MAX_BATCH_IDS)
        self._batches: bool | None = None  # whether the server answers batch GETs (None: not asked yet)
        # prefetch state, guarded by _lock; every id asked for ahead gets a rising sequence number:
        # queued (not started), being fetched, answered and not read yet
        self._lock = threading.Condition()
        self._seq = 0
        self._queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self._fetching: set[bytes] = set()
        self._ready: dict[bytes, tuple[int, tuple[bytes, str | None] | BaseException]] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def batches(self) -> bool | None:
        """Whether the server answers batch GETs (None: none asked yet)."""
        return self._batches

    def read_block_file(self, block_id: bytes) -> tuple[bytes, str | None]:
        got: tuple[bytes, str | None] | BaseException | None = None
        with self._lock:
            while True:
                while block_id in self._fetching:
                    self._lock.wait()
                if block_id in self._ready:
                    seq, got = self._ready.pop(block_id)
                    self._skip_before(seq)
                    break
                seq = next((s for s, queued in self._queue if queued == block_id), -1)
                if seq < 0:
                    break
                self._skip_before(seq)
                if self._batches is False or self._closed:  # not started yet: this thread fetches it now
                    self._queue.popleft()
                    break
                # batches: it goes with the next request of the prefetcher, which is at it now
                self._lock.notify_all()
                self._lock.wait()
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
            # one connection while batches are answered (one thread gathers the most ids into each
            # request), all of them once the server is known to answer block by block
            while len(self._threads) < (1 if self._batches is not False else self._connections):
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
                    taken = self._take(self._ahead - len(self._ready) - len(self._fetching))
                self._fetch_many(conn, taken)
        finally:
            conn.close()

    def _take(self, room: int) -> list[tuple[int, bytes]]:
        """Up to ``room`` (at least one) and at most a batch of the next queued blocks, now being
        fetched (under the lock); an id already on its way is not asked for twice."""
        taken: list[tuple[int, bytes]] = []
        while self._queue and len(taken) < min(max(1, room), self._batch_ids):
            seq, block_id = self._queue.popleft()
            if block_id in self._fetching or block_id in self._ready:
                continue
            self._fetching.add(block_id)
            taken.append((seq, block_id))
        return taken

    def _fetch_many(self, conn: _Connection, taken: list[tuple[int, bytes]]) -> None:
        """Fetch ``taken`` and hand each block's bytes or error to its reader the moment it is known:
        several in one batch GET while the server offers it (a block it does not hold is then asked
        for alone, which names the store in BlockMissing), else one by one."""
        alone = taken
        if len(taken) > 1 and self._batches is not False:
            waiting = dict(enumerate(taken))
            absent: list[tuple[int, bytes]] = []

            def arrived(index: int, data: bytes | None) -> None:
                if index in waiting:  # (a retried request delivers its first frames again)
                    seq, block_id = waiting.pop(index)
                    if data is None:
                        absent.append((seq, block_id))
                    else:
                        self._hand(seq, block_id, (data, None))

            path = f"{self._path}/{BATCH_NAME}?{query([block_id for _seq, block_id in taken])}"
            try:
                self._batches = conn.get_batch(path, [block_id for _seq, block_id in taken], arrived)
            except Exception as exc:  # handed to the reader of each block not handed yet, who raises it
                for seq, block_id in [*waiting.values(), *absent]:
                    self._hand(seq, block_id, exc)
                return
            alone = absent if self._batches else taken
        for seq, block_id in alone:
            result: tuple[bytes, str | None] | BaseException
            try:
                result = self._fetch(conn, block_id)
            except Exception as exc:
                result = exc
            self._hand(seq, block_id, result)

    def _hand(self, seq: int, block_id: bytes, result: tuple[bytes, str | None] | BaseException) -> None:
        with self._lock:
            self._fetching.discard(block_id)
            self._ready[block_id] = (seq, result)
            self._lock.notify_all()

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
