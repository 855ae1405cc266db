"""The batch GET of a file-writer process's ``http://`` reader (``http_blocking``, wire:
``batch_wire``): blocks asked for ahead travel several to a request where the server answers
batches, one by one where it does not; a batch answer off the wire is ``RemoteUnavailable`` for
each of its blocks, whatever is wrong with it (cut, too long, a frame for another block, bad
framing, too slow), and nothing it carried is handed out.

The server here is a real socket server on loopback that answers as each test scripts it; the
reader against our real hub is in ``tests/flist/test_child_fetch.py``.
"""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from zos_upgrade.flist.stores.base import MAX_STORED_BYTES
from zos_upgrade.flist.stores.batch_wire import CONTENT_TYPE, frame_head
from zos_upgrade.flist.stores.http_blocking import BlockingHttpReader, RemoteUnavailable

BLOCKS = {bytes([n]) * 32: bytes([n]) * (1000 + n) for n in range(1, 6)}
IDS = list(BLOCKS)

# a scripted batch answer: the ids asked for -> the raw bytes sent back, or pieces of them with
# pauses (seconds) between; the connection then closes unless the test keeps it open
Answer = Callable[[list[bytes]], bytes | list[bytes | float]]


@dataclass
class Scripted:
    url: str
    answer: list[Answer | None] = field(default_factory=lambda: [None])  # None: 404, no batches
    paths: list[str] = field(default_factory=list)
    connections: int = 0
    keep_open: bool = False  # after a scripted answer (else the server closes the connection)


def head(status: str, length: int, content_type: str = CONTENT_TYPE, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n{extra}"
            "\r\n").encode()


def frames(ids: list[bytes]) -> bytes:
    return b"".join(frame_head(i, len(BLOCKS[i])) + BLOCKS[i] for i in ids)


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted("")

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            scripted.connections += 1
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                path = line.split()[1].decode()
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                scripted.paths.append(path)
                if "/batch?" in path:
                    answer = scripted.answer[0]
                    if answer is not None:
                        ids = [bytes.fromhex(h) for h in path.split("ids=", 1)[1].split(",")]
                        reply = answer(ids)
                        for piece in [reply] if isinstance(reply, bytes) else reply:
                            if isinstance(piece, float):
                                time.sleep(piece)
                            else:
                                self.wfile.write(piece)
                                self.wfile.flush()
                        if not scripted.keep_open:
                            return
                        continue
                    self.wfile.write(head("404 Not Found", 0))
                    continue
                body = BLOCKS.get(bytes.fromhex(path.rsplit("/", 1)[1]))
                if body is None:
                    self.wfile.write(head("404 Not Found", 0))
                else:
                    self.wfile.write(head("200 OK", len(body), "application/octet-stream") + body)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    with Server(("127.0.0.1", 0), Handler) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        scripted.url = f"http://127.0.0.1:{srv.server_address[1]}/blocks"
        yield scripted
        srv.shutdown()


def read_ahead(url: str, ids: list[bytes], *, timeout: float = 5.0) -> list[bytes | BaseException]:
    """Ask the reader for ``ids`` ahead (one batch), then read each: its bytes or its error."""
    reader = BlockingHttpReader(url, timeout=timeout)
    try:
        reader.prefetch(ids)
        results: list[bytes | BaseException] = []
        for block_id in ids:
            try:
                results.append(reader.read_block_file(block_id)[0])
            except Exception as exc:
                results.append(exc)
        return results
    finally:
        reader.close()


def test_blocks_asked_ahead_travel_in_one_batch(server: Scripted) -> None:
    server.answer = [lambda ids: head("200 OK", len(frames(ids))) + frames(ids)]
    assert read_ahead(server.url, IDS) == [BLOCKS[i] for i in IDS]
    assert server.paths == ["/blocks/batch?ids=" + ",".join(i.hex() for i in IDS)]


def test_a_server_without_batches_is_read_block_by_block(server: Scripted) -> None:
    assert read_ahead(server.url, IDS) == [BLOCKS[i] for i in IDS]
    assert server.paths[0].startswith("/blocks/batch?")
    assert all("/batch" not in p for p in server.paths[1:]) and len(server.paths) == 1 + len(IDS)


def test_a_page_answering_every_path_is_not_taken_for_a_batch(server: Scripted) -> None:
    page = b"<html>welcome</html>"
    server.answer = [lambda ids: head("200 OK", len(page), "text/html") + page]
    assert read_ahead(server.url, IDS) == [BLOCKS[i] for i in IDS]
    assert sum("/batch" in p for p in server.paths) == 1


def test_an_absent_frame_is_asked_for_alone(server: Scripted) -> None:
    absent = bytes(32)

    def answer(ids: list[bytes]) -> bytes:
        body = b"".join(frame_head(i, None) if i == absent or i == IDS[0] else frame_head(i, len(BLOCKS[i]))
                        + BLOCKS[i] for i in ids)
        return head("200 OK", len(body)) + body

    server.answer = [answer]
    results = read_ahead(server.url, [IDS[0], absent, IDS[1]])
    assert results[0] == BLOCKS[IDS[0]] and results[2] == BLOCKS[IDS[1]]  # the first one alone
    assert isinstance(results[1], Exception) and absent.hex() in str(results[1])  # BlockMissing


def cut(ids: list[bytes]) -> bytes:
    body = frames(ids)
    return head("200 OK", len(body)) + body[:len(body) // 2]


def overlong(ids: list[bytes]) -> bytes:
    body = frame_head(ids[0], MAX_STORED_BYTES + 1) + b"x" * 100
    return head("200 OK", len(body) + MAX_STORED_BYTES) + body


def swapped(ids: list[bytes]) -> bytes:
    body = frames([ids[1], ids[0], *ids[2:]])
    return head("200 OK", len(body)) + body


def trailing(ids: list[bytes]) -> bytes:
    body = frames(ids) + b"extra"
    return head("200 OK", len(body)) + body


def bad_id_length(ids: list[bytes]) -> bytes:
    body = frames(ids)
    body = bytes([16]) + body[1:]
    return head("200 OK", len(body)) + body


def too_long_for_its_blocks(ids: list[bytes]) -> bytes:
    return head("200 OK", len(ids) * (MAX_STORED_BYTES + 64))


def chunked(ids: list[bytes]) -> bytes:
    body = frames(ids)
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"{len(body):x}\r\n").encode() + body + b"\r\n0\r\n\r\n"


def refused(ids: list[bytes]) -> bytes:
    return head("503 Service Unavailable", 0)


@pytest.mark.parametrize(("answer", "reason"), [
    (cut, "connection closed after"),
    (overlong, "more than the"),
    (swapped, "was due"),
    (bad_id_length, "was due"),
    (too_long_for_its_blocks, "more than 5 blocks can hold"),
    (chunked, "without a Content-Length"),
    (refused, "answered 503"),
])
def test_a_batch_answer_off_the_wire_fails_each_of_its_blocks(server: Scripted, answer: Answer,
                                                              reason: str) -> None:
    """Each block from the fault on is RemoteUnavailable; one before it was a whole frame under its
    own id (and is verified against that id by its writer, like any block)."""
    server.answer = [answer]
    results = read_ahead(server.url, IDS)
    assert isinstance(results[-1], RemoteUnavailable)
    for block_id, result in zip(IDS, results, strict=True):
        failed = isinstance(result, RemoteUnavailable) and reason in str(result)
        assert result == BLOCKS[block_id] or failed, result


def test_bytes_after_the_last_frame_end_the_connection(server: Scripted) -> None:
    """Every frame was whole and named: its blocks are handed out; the bytes after them would be
    read as the next answer, so the reader drops the connection (the server kept it open)."""
    server.answer, server.keep_open = [trailing], True
    reader = BlockingHttpReader(server.url)
    try:
        for ids in (IDS[:3], IDS[3:]):
            reader.prefetch(ids)
            assert [reader.read_block_file(i)[0] for i in ids] == [BLOCKS[i] for i in ids]
    finally:
        reader.close()
    assert sum("/batch?" in p for p in server.paths) == 2 and server.connections == 2


def test_a_batch_answer_too_slow_fails_after_the_reader_timeout(server: Scripted) -> None:
    def stalled(ids: list[bytes]) -> list[bytes | float]:
        body = frames(ids)
        return [head("200 OK", len(body)) + body[:1500], 1.5, body[1500:]]  # a pause past the timeout

    server.answer = [stalled]
    started = time.monotonic()
    results = read_ahead(server.url, IDS, timeout=0.5)
    assert time.monotonic() - started < 5
    assert results[0] == BLOCKS[IDS[0]]  # whole before the pause
    assert all(isinstance(r, RemoteUnavailable) and "timed out" in str(r) for r in results[2:]), results


def test_the_batch_ids_go_in_the_path_unencoded(server: Scripted) -> None:
    """What our hub parses (``batch_wire.parse_query``): ids=<hex>,<hex> with plain commas."""
    server.answer = [lambda ids: head("200 OK", len(frames(ids))) + frames(ids)]
    read_ahead(server.url, IDS[:2])
    assert server.paths == [f"/blocks/batch?ids={IDS[0].hex()},{IDS[1].hex()}"]
