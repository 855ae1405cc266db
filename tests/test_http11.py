"""LeanTransport against a real loopback server that answers exactly the bytes each test scripts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from zos_upgrade import net
from zos_upgrade.http11 import LeanTransport

BLOCK = bytes.fromhex("ab" * 32)
Answer = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """Counts connections and requests; ``answer`` writes the reply and says whether to keep going."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                self.requests.append(head)
                if not await self.answer(head, reader, writer):
                    return
        finally:
            writer.close()


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[Server, str]]:
    server = Server(answer)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        await listener.wait_closed()


def reply(raw: bytes, keep: bool = True) -> Answer:
    async def answer(_head: bytes, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        return keep
    return answer


def client(**kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=LeanTransport(**kwargs), timeout=2.0)  # type: ignore[arg-type]


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_content_length_answers_reuse_one_connection_and_send_a_proper_request() -> None:
    async def main() -> None:
        hello = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        async with serving(hello) as (server, url), client() as http:
            for _ in range(3):
                answer = await http.get(f"{url}/blocks/ab/abcd?x=1")
                assert (answer.status_code, answer.content) == (200, b"hello")
        assert server.connections == 1 and len(server.requests) == 3
        first = server.requests[0].split(b"\r\n")
        assert first[0] == b"GET /blocks/ab/abcd?x=1 HTTP/1.1"
        assert any(line.lower().startswith(b"host: 127.0.0.1:") for line in first)
    run(main())


def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
    until_close = b"HTTP/1.0 200 OK\r\n\r\nall of it"

    async def main() -> None:
        async with serving(reply(chunked)) as (server, url), client() as http:
            assert (await http.get(url)).content == b"abcde"
            assert (await http.get(url)).content == b"abcde"
            assert server.connections == 1
        async with serving(reply(until_close, keep=False)) as (server, url), client() as http:
            assert (await http.get(url)).content == b"all of it"
            assert (await http.get(url)).content == b"all of it"
            assert server.connections == 2  # a body that ends with the connection cannot reuse it
    run(main())


def test_connection_close_and_http10_are_not_reused_head_has_no_body() -> None:
    async def main() -> None:
        closing = reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", keep=False)
        async with serving(closing) as (server, url), client() as http:
            for _ in range(2):
                assert (await http.get(url)).content == b"ok"
            assert server.connections == 2
        head = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        async with serving(head) as (server, url), client() as http:
            for _ in range(2):
                answer = await http.head(url)
                assert answer.status_code == 200 and answer.content == b""
            assert server.connections == 1
    run(main())


def test_a_keep_alive_connection_the_server_closed_while_idle_is_replaced_transparently() -> None:
    async def once(_head: bytes, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return False  # answers, then closes without saying so

    async def main() -> None:
        async with serving(once) as (server, url), client() as http:
            assert (await http.get(url)).content == b"ok"
            await asyncio.sleep(0)  # nothing read the FIN yet, or it did: both must work
            assert (await http.get(url)).content == b"ok"
            assert (await http.get(url)).content == b"ok"
            assert server.connections == 3
    run(main())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "bad content-length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad content-length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "chunked last"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY\r\n", "not followed by CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "before the end of the body"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "larger than"),
        (b"HTTP/1.1 200", "inside the response head"),
        (b"", "without answering"),
    ],
)
def test_malformed_answers_are_protocol_errors(raw: bytes, message: str) -> None:
    async def main() -> None:
        async with serving(reply(raw, keep=False)) as (_, url), client() as http:
            with pytest.raises(httpx.RemoteProtocolError, match=message):
                await http.get(url)
    run(main())


def test_timeouts_and_refused_connections_are_httpx_errors() -> None:
    async def silent(_head: bytes, reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> bool:
        await reader.read()  # never answers
        return False

    async def main() -> None:
        quick = httpx.AsyncClient(transport=LeanTransport(), timeout=0.2)
        async with serving(silent) as (_, url), quick as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(url)
        async with serving(silent) as (_, url):
            pass  # the listener is closed now: nobody accepts on that port
        async with client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(url)
    run(main())


def test_through_net_fetch_an_endless_chunked_body_is_cut_at_the_limit_and_not_reused() -> None:
    async def endless(_head: bytes, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(10_000):
                writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        return False

    async def main() -> None:
        async with serving(endless) as (server, url), client() as http:
            with pytest.raises(net.ResponseTooLarge):
                await net.fetch(http, url, max_bytes=64 * 1024)
            assert server.connections == 1
    run(main())


def test_what_it_does_not_speak_goes_to_the_fallback_transport() -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.scheme))
        return httpx.Response(200, content=b"fallback")

    async def main() -> None:
        lean = LeanTransport(fallback=httpx.MockTransport(handler))
        async with httpx.AsyncClient(transport=lean) as http:
            assert (await http.get("https://example.invalid/x")).content == b"fallback"
            assert (await http.post("http://example.invalid/x", content=b"body")).content == b"fallback"
            assert (await http.put("http://example.invalid/x")).content == b"fallback"
        assert seen == [("GET", "https"), ("POST", "http"), ("PUT", "http")]
    run(main())


def test_httpx_own_transport_is_made_only_for_a_request_the_lean_one_hands_over(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Building httpx's transport costs an SSL context: plain GETs never pay it, ``https://`` does."""
    made: list[httpx.AsyncHTTPTransport] = []
    real = httpx.AsyncHTTPTransport

    def counted(*args: object, **kwargs: object) -> httpx.AsyncHTTPTransport:
        made.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(httpx, "AsyncHTTPTransport", counted)

    async def main() -> None:
        hello = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        async with serving(hello) as (_server, url), client() as http:
            assert (await http.get(f"{url}/a")).content == b"hello"
            assert made == []
            with socket.socket() as closed:  # a port nobody listens on: httpx's transport refuses
                closed.bind(("127.0.0.1", 0))
                port = closed.getsockname()[1]
            with pytest.raises(httpx.ConnectError):
                await http.get(f"https://127.0.0.1:{port}/a")
            assert len(made) == 1
    run(main())


def test_a_block_store_goes_through_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean transport does not speak to proxies: with HTTP_PROXY set, HttpStore keeps httpx's."""
    from zos_upgrade.flist.stores import HttpStore

    async def proxy(head: bytes, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        assert head.startswith(b"GET http://blocks.invalid/ab/" + BLOCK.hex().encode())  # absolute form
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nblock")
        await writer.drain()
        return True

    async def main() -> None:
        async with serving(proxy) as (server, url):
            monkeypatch.setenv("HTTP_PROXY", url)
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            store = HttpStore("http://blocks.invalid")
            try:
                assert await store.get(BLOCK) == b"block"
            finally:
                await store.aclose()
            assert len(server.requests) == 1
    run(main())
