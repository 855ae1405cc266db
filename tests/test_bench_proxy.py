"""The counting proxy of ``benchmarks/compare.py`` counts exactly the bytes each way.

A real server on a free loopback port reads a request to its end (the client's half-close) and
answers a reply of a known size; the proxy runs as the child process the benchmark starts.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from benchmarks._support.proxy import CountingProxy, ProxyProcess

REPLY = 765_433


def _serve(listener: socket.socket, received: list[int]) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # the test closed the listener
        with conn:
            got = 0
            while chunk := conn.recv(65536):
                got += len(chunk)
            received.append(got)
            conn.sendall(os.urandom(REPLY))


@pytest.fixture
def server() -> Iterator[tuple[int, list[int]]]:
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[int] = []
    thread = threading.Thread(target=_serve, args=(listener, received), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the thread's accept() (close alone does not)
        listener.close()
        thread.join(5)
        assert not thread.is_alive()


def exchange(port: int, payload: bytes) -> int:
    """Send ``payload``, half-close, read the reply to its end: the reply's length (0 when the proxy
    closed the connection first: its target refused it, which can beat our send or half-close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            return sum(len(chunk) for chunk in iter(lambda: sock.recv(65536), b""))
        except OSError as exc:
            if exc.errno not in (errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET):
                raise
            return 0


def test_proxy_process_counts_each_direction_and_route(server: tuple[int, list[int]]) -> None:
    port, received = server
    with ProxyProcess({"a": port, "b": port}) as proxy:
        assert set(proxy.ports) == {"a", "b"} and port not in proxy.ports.values()
        with proxy.measure("a") as first:
            assert exchange(proxy.ports["a"], os.urandom(1_234_567)) == REPLY
            assert exchange(proxy.ports["a"], b"x" * 10) == REPLY
        with proxy.measure("b") as second:
            assert exchange(proxy.ports["b"], b"") == REPLY
        totals = proxy.counts()
    assert received == [1_234_567, 10, 0]  # the server got every byte the client sent
    assert (first.up, first.down, first.connections) == (1_234_577, 2 * REPLY, 2)
    assert (second.up, second.down, second.connections) == (0, REPLY, 1)
    assert (totals["a"].total, totals["b"].total) == (1_234_577 + 2 * REPLY, REPLY)


def test_in_process_proxy_counts_and_survives_a_dead_target(server: tuple[int, list[int]]) -> None:
    port, _ = server
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there now

    async def scenario() -> tuple[int, dict[str, tuple[int, int, int]]]:
        proxy = CountingProxy({"live": port, "dead": dead_port})
        ports = await proxy.start()
        try:
            reply = await asyncio.to_thread(exchange, ports["live"], b"y" * 300_001)
            assert await asyncio.to_thread(exchange, ports["dead"], b"z" * 5) == 0
            return reply, {k: (c.up, c.down, c.connections) for k, c in proxy.counts().items()}
        finally:
            await proxy.close()

    reply, counts = asyncio.run(scenario())
    assert reply == REPLY
    assert counts["live"] == (300_001, REPLY, 1)
    assert counts["dead"][1:] == (0, 1)  # refused by the target: nothing came back
