"""The http(s):// store against a uvicorn server in a child process."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.flist.stores.blocks import V1_DATA, V1_REF, V2_DATA, V2_REF
from tests.support.procs import free_port, serving
from zos_upgrade.flist.blocks import encrypt_block_v2
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.materialize import MaterializeReport, materialize
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import (
    MAX_STORED_BYTES,
    BlockMissing,
    DirStore,
    HttpStore,
    StoreError,
    open_store,
)
from zos_upgrade.net import Backoff, RetryPolicy

APP = textwrap.dedent(
    """
    import os
    from pathlib import Path
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    ROOT = Path(os.environ["BLOCKS_ROOT"])
    MAX = int(os.environ["MAX_STORED_BYTES"])
    hits = []

    async def block(request):
        hits.append(request.url.path)
        rel = request.path_params["rest"]
        path = (ROOT / rel).resolve()
        if ROOT.resolve() not in path.parents or not path.is_file():
            return Response(status_code=404)
        body = path.read_bytes()
        if request.method == "HEAD":
            return Response(headers={"content-length": str(len(body))})
        return Response(body)

    async def broken(request):
        hits.append(request.url.path)
        return Response("down", status_code=503)

    async def get_only(request):
        if request.method == "HEAD":
            hits.append("refused HEAD")
            return Response(status_code=405)
        return await block(request)

    async def flaky_for_children(request):
        # refuses the file-writer processes' own client, serves httpx: the parent's fallback path
        if request.headers.get("user-agent") == "zos-upgrade":
            hits.append("refused child")
            return Response("busy", status_code=503)
        return await block(request)

    async def huge(request):
        return Response(b"x" * (MAX + 1))

    async def chunked(request):
        answer = await block(request)
        if answer.status_code != 200:
            return answer
        body = answer.body

        async def pieces():
            for start in range(0, len(body), 100_000):
                yield body[start:start + 100_000]
        return StreamingResponse(pieces())

    async def hit_count(request):
        return Response(str(hits.count(request.query_params.get("what", ""))))

    app = Starlette(routes=[
        Route("/blocks/{rest:path}", block, methods=["GET", "HEAD"]),
        Route("/broken/{rest:path}", broken, methods=["GET", "HEAD"]),
        Route("/getonly/{rest:path}", get_only, methods=["GET", "HEAD"]),
        Route("/flaky/{rest:path}", flaky_for_children),
        Route("/huge/{rest:path}", huge),
        Route("/chunked/{rest:path}", chunked),
        Route("/hits", hit_count),
    ])
    """
)


@pytest.fixture(scope="module")
def http_blocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    work = tmp_path_factory.mktemp("httpstore")
    (work / "blockapp.py").write_text(APP)
    root = work / "blocks"
    root.mkdir()
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "blockapp:app", "--host", "127.0.0.1", "--port", str(port),
           "--app-dir", str(work), "--log-level", "warning"]
    with serving(cmd, port, env={"BLOCKS_ROOT": str(root), "MAX_STORED_BYTES": str(MAX_STORED_BYTES)}):
        yield f"http://127.0.0.1:{port}", root


def test_http_store_reads_sharded_then_flat(http_blocks: tuple[str, Path]) -> None:
    base, root = http_blocks
    sharded = V2_REF.id.hex()
    (root / sharded[:2]).mkdir(exist_ok=True)
    (root / sharded[:2] / sharded).write_bytes(V2_DATA)
    (root / V1_REF.id.hex()).write_bytes(V1_DATA)

    async def scenario() -> None:
        store = open_store(f"{base}/blocks")
        assert isinstance(store, HttpStore)
        assert await store.get(V2_REF.id) == V2_DATA
        assert await store.get(V1_REF.id) == V1_DATA
        assert await store.has(V1_REF.id)
        results = await asyncio.gather(*(store.get(V2_REF.id) for _ in range(20)))
        assert all(r == V2_DATA for r in results)
        await store.aclose()

    asyncio.run(scenario())


def test_http_store_has_without_head_support(http_blocks: tuple[str, Path]) -> None:
    base, root = http_blocks
    (root / V1_REF.id.hex()).write_bytes(V1_DATA)
    missing, _ = encrypt_block_v2(b"not there")

    async def scenario() -> None:
        store = open_store(f"{base}/getonly")
        assert await store.has(V1_REF.id)
        assert not await store.has(missing.id)
        await store.aclose()
        async with httpx.AsyncClient() as client:
            refused = await client.get(f"{base}/hits", params={"what": "refused HEAD"})
        assert int(refused.text) >= 3  # HEAD was tried and refused, GET answered instead

    asyncio.run(scenario())


def test_http_store_missing_block(http_blocks: tuple[str, Path]) -> None:
    base, _ = http_blocks
    missing, _data = encrypt_block_v2(b"never uploaded")

    async def scenario() -> None:
        store = open_store(f"{base}/blocks/")
        assert not await store.has(missing.id)
        with pytest.raises(BlockMissing, match=missing.id.hex()):
            await store.get(missing.id)
        await store.aclose()

    asyncio.run(scenario())


def test_http_store_is_read_only(http_blocks: tuple[str, Path]) -> None:
    base, _ = http_blocks
    store = open_store(f"{base}/blocks")
    with pytest.raises(StoreError, match="read-only"):
        asyncio.run(store.put(V2_REF.id, V2_DATA))
    asyncio.run(store.aclose())


def test_http_store_gives_up_after_retries(http_blocks: tuple[str, Path]) -> None:
    base, _ = http_blocks
    policy = RetryPolicy(attempts=3, backoff=Backoff(base=0.001, cap=0.001), deadline=5)

    async def scenario() -> None:
        store = HttpStore(f"{base}/broken", retry=policy)
        with pytest.raises(StoreError, match="failed after 3 attempts"):
            await store.get(V2_REF.id)
        await store.aclose()

    asyncio.run(scenario())


def test_http_store_unreachable(tmp_path: Path) -> None:
    policy = RetryPolicy(attempts=2, backoff=Backoff(base=0.001, cap=0.001), deadline=5)

    async def scenario() -> None:
        store = HttpStore(f"http://127.0.0.1:{free_port()}/blocks", retry=policy)
        with pytest.raises(StoreError, match=r"failed after 2 attempts"):
            await store.get(V2_REF.id)
        await store.aclose()

    asyncio.run(scenario())


def test_materialize_over_http_through_file_writer_processes(http_blocks: tuple[str, Path],
                                                             tmp_path: Path) -> None:
    """The node's path: blocks from an HTTP store; the parent fills the cache, children write."""
    from tests.flist.test_roundtrip import snapshot
    from tests.flist.test_writer_pool import make_tree

    base, root = http_blocks
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src, files=20)
    asyncio.run(pack(src, tmp_path / "rel.fl", DirStore(root)))

    async def unpack(dest: str, workers: int) -> MaterializeReport:
        store = HttpStore(f"{base}/blocks")
        try:
            return await materialize(tmp_path / "rel.fl", tmp_path / dest, store=store, workers=workers,
                                     cache=BlockCache(tmp_path / f"cache-{dest}"))
        finally:
            await store.aclose()

    one, two = asyncio.run(unpack("one", 0)), asyncio.run(unpack("two", 2))
    assert two.writer_processes == 2 and one.writer_processes == 0
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one") == snapshot(src)
    assert (two.blocks_fetched, two.bytes_downloaded, two.bytes_written) == (
        one.blocks_fetched, one.bytes_downloaded, one.bytes_written)
