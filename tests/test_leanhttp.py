"""The lean poll client (issue 19 item 5) under net.fetch: good answers read like httpx reads them,
and every malformed or hostile answer is a typed error that changes nothing.

Each test runs a real TCP server on a free loopback port that answers with scripted bytes.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from zos_upgrade.hub import HubClient
from zos_upgrade.leanhttp import MAX_HEADERS, LeanClient, LeanHTTPError, proxy_configured
from zos_upgrade.net import BadEncoding, NetworkError, NotFound, ResponseTooLarge, RetryPolicy, fetch

ONE = RetryPolicy(attempts=1, deadline=5.0, total=5.0)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback server; yields its base URL and the request heads it received."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            await handler(reader, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", heads
    finally:
        srv.close()
        await srv.wait_closed()


def answer(raw: bytes) -> Handler:
    async def send(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
    return send


async def get(url: str, *, max_bytes: int = 1 << 20, timeout: float = 2.0, **kw: object) -> tuple[int, bytes]:
    async with LeanClient(timeout=timeout) as client:
        result = await fetch(client, url, max_bytes=max_bytes, retry=ONE, **kw)  # type: ignore[arg-type]
    return result.status, result.body


def run(coro: Awaitable[object]) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_content_length_chunked_and_close_framed_bodies() -> None:
    async def main() -> None:
        hello = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"a\"\r\n\r\nhello"
        async with server(answer(hello)) as (url, heads):
            async with LeanClient(timeout=2) as client:
                result = await fetch(client, url + "/x?y=1", max_bytes=100, retry=ONE,
                                     headers={"If-None-Match": '"z"'})
            assert (result.status, result.body, result.etag) == (200, b"hello", '"a"')
            head = heads[0].decode()
            assert head.startswith("GET /x?y=1 HTTP/1.1\r\n") and 'If-None-Match: "z"' in head
            assert "Accept-Encoding: gzip, deflate" in head and "Connection: close" in head
        chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n")
        async with server(answer(chunked)) as (url, _):
            assert await get(url) == (200, b"abcde")
        async with server(answer(b"HTTP/1.0 200 OK\r\n\r\nuntil close")) as (url, _):
            assert await get(url) == (200, b"until close")
        async with server(answer(b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n")) as (url, _):
            assert await get(url, expect=(200, 304)) == (304, b"")
        body = gzip.compress(b"x" * 1000)
        gz = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        async with server(answer(gz)) as (url, _):
            assert await get(url) == (200, b"x" * 1000)  # decoded by fetch, as for httpx
    run(main())


def test_interim_answers_and_redirects_are_followed() -> None:
    async def main() -> None:
        async with server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as (target, _):
            moved = f"HTTP/1.1 302 Found\r\nLocation: {target}/there\r\nContent-Length: 0\r\n\r\n".encode()
            async with server(answer(b"HTTP/1.1 100 Continue\r\n\r\n" + moved)) as (url, _):
                assert await get(url) == (200, b"ok")

        async def loop(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 301 Moved\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")
        async with server(loop) as (url, heads):
            with pytest.raises(NetworkError, match="redirects"):
                await get(url)
            assert len(heads) == 6  # the first request and five redirects, then it gives up
    run(main())


@pytest.mark.parametrize(("raw", "reason"), [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 2x0 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * (MAX_HEADERS + 1) + b"\r\n", "answer head larger"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "longer than"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "before its Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "ends inside a chunk"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n", "not followed by CRLF"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the answer's head"),
])
def test_malformed_answers_are_transport_errors(raw: bytes, reason: str) -> None:
    async def main() -> None:
        async with server(answer(raw)) as (url, _):
            with pytest.raises(NetworkError, match=reason):
                await get(url)
    run(main())


def test_limits_statuses_and_codings_keep_fetch_rules() -> None:
    async def main() -> None:
        big = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"a" * 2000
        async with server(answer(big)) as (url, _):
            with pytest.raises(ResponseTooLarge):
                await get(url, max_bytes=1000)
        endless = b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 5000  # framed by the close, still capped
        async with server(answer(endless)) as (url, _):
            with pytest.raises(ResponseTooLarge):
                await get(url, max_bytes=1000)
        async with server(answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")) as (url, _):
            with pytest.raises(NotFound):
                await get(url)
        async with server(answer(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\nxx")) as (url, _):
            with pytest.raises(BadEncoding):
                await get(url)
    run(main())


def test_a_silent_server_and_a_closed_port_fail_in_time() -> None:
    async def silent(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        async with server(silent) as (url, _):
            started = asyncio.get_running_loop().time()
            with pytest.raises(NetworkError, match=r"no data within 0\.3s"):
                await get(url, timeout=0.3)
            assert asyncio.get_running_loop().time() - started < 2
        async with server(silent) as (url, _):
            pass  # closed: nothing listens on its port now
        with pytest.raises(NetworkError, match="cannot connect"):
            await get(url)
    run(main())


def test_bad_urls_and_header_injection_are_refused_before_sending() -> None:
    async def main() -> None:
        async with LeanClient(timeout=1) as client:
            for url in ("ftp://127.0.0.1/x", "http:///x", "http://127.0.0.1:99999/x"):
                with pytest.raises(LeanHTTPError):
                    async with client.stream("GET", url):
                        pass
        async with server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as (url, heads):
            async with LeanClient(timeout=1) as client:
                with pytest.raises(LeanHTTPError, match="line break"):
                    async with client.stream("GET", url, headers={"If-None-Match": "a\r\nX-Evil: 1"}):
                        pass
            assert heads == []  # nothing was sent
    run(main())


def test_the_hub_client_polls_without_httpx_unless_a_proxy_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert proxy_configured({"HTTPS_PROXY": "http://proxy:3128"})
    assert proxy_configured({"all_proxy": "socks5://p"})
    assert not proxy_configured({"NO_PROXY": "*"})
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(HubClient("http://127.0.0.1:1")._lean, LeanClient)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert HubClient("http://127.0.0.1:1")._lean is None  # httpx honours the proxy; the lean client cannot
    monkeypatch.delenv("HTTPS_PROXY")
    mock = httpx.MockTransport(lambda r: httpx.Response(200))
    assert HubClient("http://127.0.0.1:1", transport=mock)._lean is None
