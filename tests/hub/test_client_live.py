"""HubClient against our real server: conditional requests, the md5 cache, races, and bad hubs."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.hub import GOLDEN_FLISTS, TOKEN_A, Hub, HubFactory, make_golden_layout
from zos_upgrade.hub import FlistInfo, HubAnswerInvalid, HubClient
from zos_upgrade.net import Backoff, NetworkError, RetryPolicy

FAST = RetryPolicy(attempts=2, backoff=Backoff(base=0.01, cap=0.01), deadline=10.0)
V1, V2 = (GOLDEN_FLISTS / "v1.flist").read_bytes(), (GOLDEN_FLISTS / "v2.flist").read_bytes()
MD5_V1, MD5_V2 = hashlib.md5(V1).hexdigest(), hashlib.md5(V2).hexdigest()


class Recording(httpx.AsyncBaseTransport):
    """A real transport that remembers (method, path, status) of every exchange."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.seen.append((request.method, request.url.path, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_conditional_reads_return_the_remembered_value(start_hub: HubFactory, golden_root: Path) -> None:
    async def run(hub: Hub) -> None:
        wire = Recording()
        async with HubClient(hub.url, transport=wire, retry=FAST) as client:
            first = await client.info("golden/app:latest.flist")
            second = await client.info("golden/app:latest.flist")
            assert first == second
            listing = await client.list("golden")
            assert await client.list("golden") == listing
            assert [status for _, _, status in wire.seen] == [200, 304, 200, 304]

    with start_hub(golden_root) as hub:
        asyncio.run(run(hub))


def test_download_uses_and_reverifies_the_md5_cache(
    start_hub: HubFactory, golden_root: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"

    async def run(hub: Hub) -> None:
        wire = Recording()
        async with HubClient(hub.url, transport=wire, cache_dir=cache, retry=FAST) as client:
            path = await client.download("golden/app:latest.flist")
            assert path == cache / MD5_V2 and path.read_bytes() == V2
            downloads = lambda: [p for m, p, _ in wire.seen if not p.startswith("/api/")]  # noqa: E731
            assert downloads() == ["/golden/app:latest.flist"]
            assert await client.download("golden/v2.flist") == path  # same md5: served from the cache
            assert downloads() == ["/golden/app:latest.flist"]
            path.write_bytes(b"bit rot")  # a corrupt cached file is detected and fetched again
            assert (await client.download("golden/v2.flist")).read_bytes() == V2
            assert downloads() == ["/golden/app:latest.flist", "/golden/v2.flist"]
            other = tmp_path / "elsewhere"
            assert (await client.download("golden/v1.flist", other)) == other / MD5_V1
            assert sorted(p.name for p in cache.iterdir()) == [MD5_V2]  # no temp files left behind

    with start_hub(golden_root) as hub:
        asyncio.run(run(hub))


def test_link_moves_while_a_client_polls(start_hub: HubFactory, golden_root: Path) -> None:
    """Every poll sees the old release or the new one: never a 404, never a mixed answer."""

    async def run(hub: Hub) -> None:
        seen: list[FlistInfo] = []
        stop = asyncio.Event()

        async def poll(client: HubClient) -> None:
            while not stop.is_set():
                seen.append(await client.info("golden/app:latest.flist"))

        async def move(client: HubClient) -> None:
            for i in range(40):
                await client.link("v1.flist" if i % 2 == 0 else "v2.flist", "app:latest.flist")
                await asyncio.sleep(0.005)
            stop.set()

        writer = HubClient(hub.url, token="token-of-golden-000000000000", retry=FAST)
        readers = [HubClient(hub.url, retry=FAST) for _ in range(3)]
        try:
            await asyncio.gather(move(writer), *(poll(r) for r in readers))
            final = await readers[0].info("golden/app:latest.flist")
        finally:
            for client in (writer, *readers):
                await client.aclose()
        assert len(seen) > 20
        for info in seen:
            assert (info.target, info.md5, info.size) in {
                ("v1.flist", MD5_V1, len(V1)),
                ("v2.flist", MD5_V2, len(V2)),
            }
        assert {info.target for info in seen} == {"v1.flist", "v2.flist"}
        assert final.target == "v2.flist"  # the last move (i = 39) pointed it at v2

    config = '[tokens]\n"token-of-golden-000000000000" = "golden"\n'
    with start_hub(golden_root, config=config) as hub:
        asyncio.run(run(hub))


def test_uploads_racing_with_reads(start_hub: HubFactory, tmp_path: Path) -> None:
    """Re-uploading a name while others download it: every body is one whole version."""
    a, b = tmp_path / "a" / "app.flist", tmp_path / "b" / "app.flist"
    for path, data in ((a, V1), (b, V2)):
        path.parent.mkdir()
        path.write_bytes(data)

    async def run(hub: Hub) -> None:
        writer = HubClient(hub.url, token=TOKEN_A, retry=FAST)
        await writer.upload(a)
        stop = asyncio.Event()
        bodies: list[bytes] = []
        cached: list[Path] = []

        async def upload_loop() -> None:
            for i in range(12):
                await writer.upload(b if i % 2 == 0 else a)
                await asyncio.sleep(0.03)
            stop.set()

        async def raw_reader(http: httpx.AsyncClient) -> None:
            while not stop.is_set():
                answer = await http.get("/alpha/app.flist")
                assert answer.status_code == 200
                bodies.append(answer.content)

        async def client_reader(client: HubClient) -> None:
            while not stop.is_set():
                try:
                    cached.append(await client.download("alpha/app.flist"))
                except HubAnswerInvalid as exc:
                    # allowed only as "it kept changing": the hub flips faster than a round trip
                    assert "kept changing" in str(exc)

        async with httpx.AsyncClient(base_url=hub.url) as http:
            reader = HubClient(hub.url, cache_dir=tmp_path / "cache", retry=FAST)
            try:
                await asyncio.gather(upload_loop(), raw_reader(http), raw_reader(http), client_reader(reader))
            finally:
                await reader.aclose()
                await writer.aclose()
        assert bodies and all(body in (V1, V2) for body in bodies)
        assert cached and all(path.name in (MD5_V1, MD5_V2) for path in cached)
        assert all(hashlib.md5(path.read_bytes()).hexdigest() == path.name for path in set(cached))
        assert not [p for p in (hub.root / "alpha").iterdir() if p.name != "app.flist"]  # no temp leftovers

    with start_hub() as hub:
        asyncio.run(run(hub))


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    done.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_a_hanging_hub_fails_in_bounded_time(hanging_server: str) -> None:
    async def run() -> None:
        policy = RetryPolicy(attempts=2, backoff=Backoff(base=0.01, cap=0.01), deadline=5.0)
        async with HubClient(hanging_server, timeout=0.3, retry=policy) as client:
            started = time.monotonic()
            with pytest.raises(NetworkError, match="after 2 attempts"):
                await client.info("golden/v1.flist")
            assert time.monotonic() - started < 4

    asyncio.run(run())


def test_server_errors_are_retried_then_succeed() -> None:
    body = (GOLDEN_FLISTS.parent / "flist-golden-v1.flist-light.json").read_bytes()
    answers = iter([503, 502, 200])

    def flaky(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), stream=httpx.ByteStream(body))

    async def run() -> None:
        policy = RetryPolicy(attempts=3, backoff=Backoff(base=0.001, cap=0.001))
        async with HubClient("http://hub.test", transport=httpx.MockTransport(flaky), retry=policy) as client:
            assert (await client.info("golden/v1.flist")).md5 == MD5_V1

    asyncio.run(run())


def test_golden_layout_helper_matches_the_note(tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "h")
    assert (root / "golden" / "app:latest.flist").readlink() == Path("v2.flist")
    assert int((root / "golden").stat().st_mtime) == 1700000400
    shutil.rmtree(root)
