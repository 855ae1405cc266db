"""Block stores against real peers: a directory, a uvicorn server in a child process, a redis-server."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.procs import free_port, serving
from zos_upgrade.flist.blocks import decrypt_block, encrypt_block_v1, encrypt_block_v2
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.materialize import MaterializeReport, materialize
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import (
    MAX_STORED_BYTES,
    BlockMissing,
    DirStore,
    HttpStore,
    Route,
    Router,
    StoreError,
    ZdbStore,
    open_store,
)
from zos_upgrade.fsutil import TEMP_MARK
from zos_upgrade.net import Backoff, RetryPolicy

V2_REF, V2_DATA = encrypt_block_v2(b"version two block" * 100)
V1_REF, V1_DATA = encrypt_block_v1(b"version one block" * 100)


async def _no_sleep(_: float) -> None:
    return None


# --- dir:// ----------------------------------------------------------------------------------------


def test_dir_store_writes_sharded_atomically_and_reads_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"dir://{tmp_path}")
        assert not await store.has(V2_REF.id)
        await store.put(V2_REF.id, V2_DATA)
        name = V2_REF.id.hex()
        assert (tmp_path / name[:2] / name).read_bytes() == V2_DATA
        assert await store.has(V2_REF.id)
        assert decrypt_block(V2_REF, await store.get(V2_REF.id)) == b"version two block" * 100
        await store.aclose()

    asyncio.run(scenario())
    leftovers = [p for p in tmp_path.rglob("*") if TEMP_MARK in p.name]
    assert leftovers == []


def test_dir_store_falls_back_to_flat_layout(tmp_path: Path) -> None:
    (tmp_path / V1_REF.id.hex()).write_bytes(V1_DATA)
    store = DirStore(tmp_path)
    assert asyncio.run(store.get(V1_REF.id)) == V1_DATA
    assert asyncio.run(store.has(V1_REF.id))


def test_dir_store_missing_block_names_id_and_store(tmp_path: Path) -> None:
    store = open_store(f"dir://{tmp_path}")
    with pytest.raises(BlockMissing) as info:
        asyncio.run(store.get(V2_REF.id))
    assert V2_REF.id.hex() in str(info.value) and str(tmp_path) in str(info.value)


def test_dir_store_refuses_odd_ids_and_oversized_files(tmp_path: Path) -> None:
    store = DirStore(tmp_path)
    with pytest.raises(StoreError, match="16 \\(v1\\) or 32 \\(v2\\)"):
        asyncio.run(store.get(b"../../etc"))
    name = V1_REF.id.hex()
    (tmp_path / name[:2]).mkdir()
    (tmp_path / name[:2] / name).write_bytes(b"\0" * (MAX_STORED_BYTES + 1))
    with pytest.raises(StoreError, match="larger than"):
        asyncio.run(store.get(V1_REF.id))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("dir://relative/path", "dir:///absolute"),
        ("ftp://host/blocks", "unsupported"),
        ("zdb:///ns", "zdb://"),
        ("http:///nohost", "no host"),
        ("zdb://host:notaport/x", "invalid store URL"),
        ("zdb://host/a/b", "not one name"),
        ("blocks", "unsupported"),
    ],
)
def test_bad_store_urls(url: str, why: str) -> None:
    with pytest.raises(StoreError, match=why):
        open_store(url)


# --- http(s):// ------------------------------------------------------------------------------------

APP = textwrap.dedent(
    """
    import os
    from pathlib import Path
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    ROOT = Path(os.environ["BLOCKS_ROOT"])
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

    async def hit_count(request):
        return Response(str(hits.count(request.query_params.get("what", ""))))

    app = Starlette(routes=[
        Route("/blocks/{rest:path}", block, methods=["GET", "HEAD"]),
        Route("/broken/{rest:path}", broken, methods=["GET", "HEAD"]),
        Route("/getonly/{rest:path}", get_only, methods=["GET", "HEAD"]),
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
    with serving(cmd, port, env={"BLOCKS_ROOT": str(root)}):
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


# --- zdb:// against a real redis-server -------------------------------------------------------------


def test_zdb_default_namespace_round_trip(redis_port: int) -> None:
    async def scenario() -> None:
        store = open_store(f"zdb://127.0.0.1:{redis_port}")
        assert isinstance(store, ZdbStore) and store.namespace == "default"
        await store.put(V1_REF.id, V1_DATA)
        await store.put(V2_REF.id, V2_DATA)
        assert await store.has(V1_REF.id)
        assert await store.get(V1_REF.id) == V1_DATA
        assert decrypt_block(V2_REF, await store.get(V2_REF.id)) == b"version two block" * 100
        await store.aclose()

    asyncio.run(scenario())


def test_zdb_namespaces_are_separate(redis_port: int) -> None:
    # plain Redis only knows numeric namespaces; real 0-db namespaces are names (same SELECT command)
    ref, data = encrypt_block_v2(b"only in namespace 2")

    async def scenario() -> None:
        two = open_store(f"zdb://127.0.0.1:{redis_port}/2")
        default = open_store(f"zdb://127.0.0.1:{redis_port}/default")
        await two.put(ref.id, data)
        assert await two.get(ref.id) == data
        assert not await default.has(ref.id)
        with pytest.raises(BlockMissing, match=ref.id.hex()):
            await default.get(ref.id)
        await two.aclose()
        await default.aclose()

    asyncio.run(scenario())


def test_zdb_refused_namespace(redis_port: int) -> None:
    async def scenario() -> None:
        store = open_store(f"zdb://127.0.0.1:{redis_port}/no-such-ns")
        with pytest.raises(StoreError, match="SELECT 'no-such-ns' refused"):
            await store.get(V1_REF.id)
        await store.aclose()

    asyncio.run(scenario())


def test_zdb_password_goes_to_select(redis_port: int) -> None:
    async def scenario() -> None:
        store = open_store(f"zdb://user:secret@127.0.0.1:{redis_port}/1")
        # redis' SELECT takes one argument: the password proves it was sent with the namespace
        with pytest.raises(StoreError, match="SELECT '1' refused"):
            await store.has(V1_REF.id)
        await store.aclose()

    asyncio.run(scenario())


def test_zdb_unreachable_after_retries() -> None:
    async def scenario() -> None:
        store = ZdbStore("127.0.0.1", free_port(), timeout=1, attempts=2, sleep=_no_sleep)
        with pytest.raises(StoreError, match="failed after 2 attempts"):
            await store.get(V1_REF.id)
        await store.aclose()

    asyncio.run(scenario())


# --- routing ---------------------------------------------------------------------------------------


def _id(first: int) -> bytes:
    return bytes([first]) + b"\x11" * 31


def test_router_routes_by_first_byte(tmp_path: Path) -> None:
    low, high, both = tmp_path / "low", tmp_path / "high", tmp_path / "both"
    router = Router([Route(0x00, 0x7F, f"dir://{low}"), Route(0x80, 0xFF, f"dir://{high}"),
                     Route(0x70, 0x8F, f"dir://{both}")])

    async def scenario() -> None:
        await router.put(_id(0x10), b"a")
        await router.put(_id(0x75), b"b")
        await router.put(_id(0x90), b"c")
        assert await router.get(_id(0x10)) == b"a"
        assert await router.has(_id(0x90))
        await router.aclose()

    asyncio.run(scenario())
    assert sorted(os.listdir(low)) == ["10", "75"]
    assert sorted(os.listdir(high)) == ["90"]
    assert sorted(os.listdir(both)) == ["75"]


def test_router_read_falls_through_to_the_next_store(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    asyncio.run(DirStore(second).put(V2_REF.id, V2_DATA))
    router = Router([Route(0, 255, f"dir://{first}"), Route(0, 255, f"dir://{second}")])
    assert asyncio.run(router.get(V2_REF.id)) == V2_DATA


def test_router_missing_everywhere_names_every_store(tmp_path: Path) -> None:
    router = Router([Route(0, 255, f"dir://{tmp_path}/a"), Route(0, 255, f"dir://{tmp_path}/b")])
    with pytest.raises(BlockMissing) as info:
        asyncio.run(router.get(V2_REF.id))
    assert f"{tmp_path}/a" in str(info.value) and f"{tmp_path}/b" in str(info.value)


def test_router_without_a_matching_route(tmp_path: Path) -> None:
    router = Router([Route(0, 0, f"dir://{tmp_path}")])
    with pytest.raises(BlockMissing, match="no route"):
        asyncio.run(router.get(_id(0x42)))
    with pytest.raises(StoreError, match="no route covers"):
        asyncio.run(router.put(_id(0x42), b"x"))


def test_router_single_checks_url_early() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        Router.single("nope://x")


def test_route_validates_range() -> None:
    with pytest.raises(StoreError, match="0 <= start <= end <= 255"):
        Route(10, 5, "dir:///x")
    with pytest.raises(StoreError):
        Route(0, 256, "dir:///x")


# --- import cost -----------------------------------------------------------------------------------


def test_redis_is_imported_only_when_a_zdb_store_is_opened() -> None:
    """redis-py costs every CLI start a noticeable fraction of a second; only zdb:// needs it."""
    import subprocess

    code = textwrap.dedent("""
        import sys
        import zos_upgrade.cli, zos_upgrade.flist.stores as stores
        before = "redis" in sys.modules
        stores.open_store("dir:///tmp")
        after_dir = "redis" in sys.modules
        stores.open_store("zdb://127.0.0.1:1/default")
        print(before, after_dir, "redis" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=60)
    assert out.stdout.split() == ["False", "False", "True"]


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
