"""materialize's two ways of fetching a block the cache lacks, with the same checks and counts:

- a local store (``dir://``, has ``read_block``, or a router of them): read, verified, cached and
  written in the worker thread that writes the file, threads sharing one read of a block;
- any other store (HTTP, zdb, a router with a remote route): the blocks of the next window the cache
  lacks are fetched on the event loop (a block several files want is fetched once), then the worker
  thread verifies, caches and writes them exactly as it does blocks of a local store.

Each is run with worker threads and with a file-writer process (``workers``): a child reads a local
store itself; for a remote store its parent fills the cache and the child writes from there.
"""

from __future__ import annotations

import asyncio
import random
import stat
from pathlib import Path

import pytest

from tests.support.stores import AsyncOnlyDirStore
from zos_upgrade.flist.blocks import BLOCK_SIZE, BlockCorrupt, encrypt_block
from zos_upgrade.flist.cache import BlockCache, CacheError
from zos_upgrade.flist.formats import write_flist
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind
from zos_upgrade.flist.stores import BlockMissing, BlockStore, DirStore, Route, Router, StoreError


def release(tmp_path: Path, files: int = 12) -> tuple[Path, DirStore, list[tuple[BlockRef, bytes]], bytes]:
    """``files`` files that all start with one shared full block and end with a short block of their own."""
    rng = random.Random(3)
    shared = rng.randbytes(BLOCK_SIZE)
    store = DirStore(tmp_path / "blocks")
    blocks = [encrypt_block(shared, "v2")]
    entries = [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755)]
    for i in range(files):
        own = encrypt_block(rng.randbytes(1000 + i), "v2")
        blocks.append(own)
        entries.append(Entry(f"/f{i:02d}", EntryKind.FILE, stat.S_IFREG | 0o644, size=BLOCK_SIZE + 1000 + i,
                             blocks=(blocks[0][0], own[0])))
    for ref, stored in blocks:
        asyncio.run(store.put(ref.id, stored))
    write_flist(tmp_path / "rel.fl", entries)
    return tmp_path / "rel.fl", store, blocks, shared


@pytest.mark.parametrize("workers", [0, 1], ids=["threads", "processes"])
@pytest.mark.parametrize("local", [True, False], ids=["local-store", "async-store"])
def test_a_cold_run_fetches_each_block_once_caches_all_writes_every_file(tmp_path: Path, local: bool,
                                                                         workers: int) -> None:
    flist, store, blocks, shared = release(tmp_path)
    counting = AsyncOnlyDirStore(store.root)
    cache = BlockCache(tmp_path / "cache")
    report = asyncio.run(materialize(flist, tmp_path / "dest", store=store if local else counting,
                                     cache=cache, concurrency=8, workers=workers))
    assert (report.files, report.writer_processes) == (12, workers)
    # the shared block: fetched once; a file that waited for that fetch counts it as neither
    assert report.blocks_from_cache <= 11
    assert report.blocks_fetched == len(blocks) == 13
    assert report.bytes_downloaded == sum(len(stored) for _, stored in blocks)
    if not local:
        assert counting.gets == 13
    # every block is in the cache, verified, by the time materialize returns
    assert all(cache.get(ref.id) == stored for ref, stored in blocks)
    for i in range(12):
        data = (tmp_path / "dest" / f"f{i:02d}").read_bytes()
        assert data[:BLOCK_SIZE] == shared and len(data) == BLOCK_SIZE + 1000 + i


@pytest.mark.parametrize("workers", [0, 1], ids=["threads", "processes"])
@pytest.mark.parametrize(("local", "reason"), [(True, "stored bytes hash"), (False, "")],
                         ids=["local-store", "async-store"])
def test_a_corrupt_block_is_named_and_not_cached(tmp_path: Path, local: bool, reason: str,
                                                 workers: int) -> None:
    # the reason's wording differs by path (a remote block is checked as the cache takes it)
    flist, store, blocks, _ = release(tmp_path, files=1)
    ref, stored = blocks[1]
    store.root.joinpath(ref.id.hex()[:2], ref.id.hex()).write_bytes(stored[:-1] + b"\0")
    cache = BlockCache(tmp_path / "cache")
    source = store if local else AsyncOnlyDirStore(store.root)
    expected = rf"/f00: block 1: from dir://.*: block {ref.id.hex()}: {reason}"
    with pytest.raises(BlockCorrupt, match=expected):
        asyncio.run(materialize(flist, tmp_path / "dest", store=source, cache=cache, workers=workers))
    assert not (tmp_path / "dest").exists()
    assert not cache.has(ref.id)


@pytest.mark.parametrize("workers", [0, 1], ids=["threads", "processes"])
def test_a_block_missing_from_a_local_store_names_the_file_and_its_position(tmp_path: Path,
                                                                           workers: int) -> None:
    flist, store, blocks, _ = release(tmp_path, files=1)
    ref, _ = blocks[1]
    store.root.joinpath(ref.id.hex()[:2], ref.id.hex()).unlink()
    with pytest.raises(BlockMissing, match=rf"/f00: block 1 \({ref.id.hex()}\) is missing; tried: dir://"):
        asyncio.run(materialize(flist, tmp_path / "dest", store=store, cache=BlockCache(tmp_path / "cache"),
                                workers=workers))
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("workers", [0, 1], ids=["threads", "processes"])
@pytest.mark.parametrize("local", [True, False], ids=["local-store", "async-store"])
def test_a_cache_that_cannot_be_written_fails_the_run_and_cleans_up(tmp_path: Path, local: bool,
                                                                    workers: int) -> None:
    flist, store, _, _ = release(tmp_path, files=3)
    (tmp_path / "cache").write_bytes(b"not a directory")
    with pytest.raises(CacheError, match="cannot write block"):
        source = store if local else AsyncOnlyDirStore(store.root)
        asyncio.run(materialize(flist, tmp_path / "dest", store=source, cache=BlockCache(tmp_path / "cache"),
                                workers=workers))
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("workers", [0, 1], ids=["threads", "processes"])
def test_a_second_run_through_an_async_store_reads_nothing_from_it(tmp_path: Path, workers: int) -> None:
    flist, store, _, _ = release(tmp_path)
    cache = BlockCache(tmp_path / "cache")
    asyncio.run(materialize(flist, tmp_path / "one", store=AsyncOnlyDirStore(store.root), cache=cache,
                            workers=workers))
    again = AsyncOnlyDirStore(store.root)
    report = asyncio.run(materialize(flist, tmp_path / "two", store=again, cache=cache, workers=workers))
    assert (report.blocks_fetched, report.blocks_from_cache, again.gets) == (0, 24, 0)
    assert report.writer_processes == workers


class SyncOnlyDirStore(DirStore):
    """A ``dir://`` store that fails the test if anything reads it through the event loop."""

    async def get(self, block_id: bytes) -> bytes:
        raise AssertionError(f"block {block_id.hex()} was read through the event loop")


def test_a_router_of_local_routes_takes_the_worker_thread_path(tmp_path: Path) -> None:
    """A flist materialized through its recorded ``dir://`` routes (no ``store=``) is a Router: when
    every route is local its blocks are read in the file-writing thread, like a bare DirStore's."""
    flist, _, blocks, _ = release(tmp_path)
    low, high = DirStore(tmp_path / "low"), DirStore(tmp_path / "high")
    for ref, stored in blocks:  # split the blocks over two stores by their first id byte
        asyncio.run((low if ref.id[0] < 128 else high).put(ref.id, stored))
    routes = [Route(0, 127, "dir://low"), Route(128, 255, "dir://high")]
    roots = {"dir://low": low.root, "dir://high": high.root}
    router = Router(routes, opener=lambda url: SyncOnlyDirStore(roots[url], url))
    assert router.is_local()
    cache = BlockCache(tmp_path / "cache")
    report = asyncio.run(materialize(flist, tmp_path / "dest", store=router, cache=cache))
    assert (report.blocks_fetched, report.files) == (13, 12)
    assert report.bytes_downloaded == sum(len(stored) for _, stored in blocks)
    assert all((tmp_path / "dest" / f"f{i:02d}").stat().st_size == BLOCK_SIZE + 1000 + i for i in range(12))


def test_a_router_with_one_remote_route_stays_on_the_event_loop(tmp_path: Path) -> None:
    flist, store, _, _ = release(tmp_path)
    counting = AsyncOnlyDirStore(store.root)
    opened: dict[str, BlockStore] = {"dir://blocks": SyncOnlyDirStore(store.root, "dir://blocks"),
                                     "zdb://remote": counting}
    router = Router([Route(0, 255, "zdb://remote"), Route(0, 255, "dir://blocks")], opener=opened.__getitem__)
    assert not router.is_local()
    cache = BlockCache(tmp_path / "cache")
    report = asyncio.run(materialize(flist, tmp_path / "dest", store=router, cache=cache))
    assert report.blocks_fetched == counting.gets == 13


class BrokenStore(DirStore):
    def lacks_block(self, block_id: bytes) -> bool:  # its files are there: get goes on to read them
        return False

    def read_block_file(self, block_id: bytes) -> tuple[bytes, Path]:  # under read_block and get
        raise StoreError(f"{self.url}: disk on fire")


@pytest.mark.parametrize("how", ["sync", "async"])
def test_a_router_reads_the_same_way_with_and_without_the_event_loop(tmp_path: Path, how: str) -> None:
    """Routes are tried in order; a failing store is skipped; the error names every store tried."""
    ref, stored = encrypt_block(b"payload", "v2")
    good, empty = DirStore(tmp_path / "good", "dir://good"), DirStore(tmp_path / "empty", "dir://empty")
    asyncio.run(good.put(ref.id, stored))
    opened: dict[str, DirStore] = {"dir://broken": BrokenStore(tmp_path / "b", "dir://broken"),
                                   "dir://empty": empty, "dir://good": good}

    def read(router: Router, block_id: bytes) -> bytes:
        return router.read_block(block_id) if how == "sync" else asyncio.run(router.get(block_id))

    urls = ["dir://broken", "dir://empty", "dir://good"]
    router = Router([Route(0, 255, url) for url in urls], opener=opened.__getitem__)
    assert read(router, ref.id) == stored
    other, _ = encrypt_block(b"nowhere", "v2")
    missing = Router([Route(0, 255, url) for url in urls[1:]], opener=opened.__getitem__)
    with pytest.raises(BlockMissing) as caught:
        read(missing, other.id)
    assert list(caught.value.stores) == ["dir://empty", "dir://good"]
    failing = Router([Route(0, 255, url) for url in urls[:2]], opener=opened.__getitem__)
    with pytest.raises(StoreError, match="disk on fire"):
        read(failing, other.id)


def long_file(tmp_path: Path, blocks: int) -> tuple[Path, DirStore, list[tuple[BlockRef, bytes]], bytes]:
    """One file of ``blocks`` distinct blocks (more than one fetch window of a remote store)."""
    rng = random.Random(7)
    chunks = [rng.randbytes(BLOCK_SIZE) for _ in range(blocks - 1)] + [rng.randbytes(100)]
    encoded = [encrypt_block(chunk, "v2") for chunk in chunks]
    store = DirStore(tmp_path / "blocks")
    for ref, stored in encoded:
        asyncio.run(store.put(ref.id, stored))
    content = b"".join(chunks)
    entries = [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755),
               Entry("/long", EntryKind.FILE, stat.S_IFREG | 0o644, size=len(content),
                     blocks=tuple(ref for ref, _ in encoded))]
    write_flist(tmp_path / "long.fl", entries)
    return tmp_path / "long.fl", store, encoded, content


@pytest.mark.parametrize("workers", [0, 1], ids=["threads", "processes"])
def test_a_remote_store_is_asked_only_for_the_blocks_the_cache_lacks(tmp_path: Path, workers: int) -> None:
    """Blocks come in windows: each window fetches only what the cache lacks, whatever the pattern."""
    flist, store, encoded, content = long_file(tmp_path, 21)
    cache = BlockCache(tmp_path / "cache")
    for ref, stored in encoded[::3]:  # every third block is cached already
        cache.put(ref.id, stored)
    remote = AsyncOnlyDirStore(store.root)
    report = asyncio.run(materialize(flist, tmp_path / "dest", store=remote, cache=cache, workers=workers))
    assert (tmp_path / "dest" / "long").read_bytes() == content
    assert remote.gets == report.blocks_fetched == 14
    assert report.blocks_from_cache == 7
    assert report.bytes_downloaded == sum(len(stored) for i, (_, stored) in enumerate(encoded) if i % 3)
    assert all(cache.get(ref.id) == stored for ref, stored in encoded)


def test_a_remote_store_without_a_cache_writes_every_block(tmp_path: Path) -> None:
    flist, store, _, content = long_file(tmp_path, 19)
    remote = AsyncOnlyDirStore(store.root)
    # a file-writer process of a remote store reads the cache its parent fills: none, so no process
    report = asyncio.run(materialize(flist, tmp_path / "dest", store=remote, workers=2))
    assert (tmp_path / "dest" / "long").read_bytes() == content
    assert remote.gets == report.blocks_fetched == 19
    assert report.writer_processes == 0


def test_a_bad_cached_block_a_process_finds_is_fetched_again_here(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    flist, store, encoded, content = long_file(tmp_path, 3)
    cache = BlockCache(tmp_path / "cache")
    for ref, stored in encoded:
        cache.put(ref.id, stored)
    cache.path_for(encoded[1][0].id).write_bytes(b"rotten")  # present, so the parent fetches nothing
    remote = AsyncOnlyDirStore(store.root)
    report = asyncio.run(materialize(flist, tmp_path / "dest", store=remote, cache=cache, workers=1))
    assert (tmp_path / "dest" / "long").read_bytes() == content
    assert (remote.gets, report.blocks_fetched, report.blocks_from_cache) == (1, 1, 2)
    assert cache.get(encoded[1][0].id) == encoded[1][1]
    assert any(r.getMessage().startswith("a block the file writer process needed") for r in caplog.records)
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["long"]


def test_a_job_of_several_files_with_one_bad_cached_block_rewrites_only_that_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # small files travel to a child together, one job; the child answers each file on its own
    rng = random.Random(5)
    store = DirStore(tmp_path / "blocks")
    cache = BlockCache(tmp_path / "cache")
    entries, contents = [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755)], {}
    for i in range(6):
        contents[f"s{i}"] = rng.randbytes(2000 + i)
        ref, stored = encrypt_block(contents[f"s{i}"], "v2")
        asyncio.run(store.put(ref.id, stored))
        cache.put(ref.id, stored)
        entries.append(Entry(f"/s{i}", EntryKind.FILE, stat.S_IFREG | 0o644, size=len(contents[f"s{i}"]),
                             blocks=(ref,)))
    write_flist(tmp_path / "rel.fl", entries)
    cache.path_for(entries[3].blocks[0].id).write_bytes(b"rotten")
    remote = AsyncOnlyDirStore(store.root)
    report = asyncio.run(materialize(tmp_path / "rel.fl", tmp_path / "dest", store=remote, cache=cache,
                                     workers=1))
    assert {p.name: p.read_bytes() for p in (tmp_path / "dest").iterdir()} == contents
    assert (report.files, report.writer_processes, remote.gets, report.blocks_fetched) == (6, 1, 1, 1)
    assert report.blocks_from_cache == 5
    warnings = [r for r in caplog.records if r.getMessage().startswith("a block the file writer process")]
    assert [r.__dict__["entry"] for r in warnings] == ["/s2"]


class FailingStore(AsyncOnlyDirStore):
    """Fails one block with a store error (a network failure after the retries) and serves the rest."""

    def __init__(self, root: Path, bad: bytes) -> None:
        super().__init__(root)
        self.bad = bad

    async def get(self, block_id: bytes) -> bytes:
        if block_id == self.bad:
            await asyncio.sleep(0.01)
            raise StoreError(f"{self.url}: connection reset")
        return await super().get(block_id)


@pytest.mark.parametrize("workers", [0, 1], ids=["threads", "processes"])
def test_a_remote_store_failure_fails_the_run_and_leaves_no_fetch_behind(tmp_path: Path,
                                                                         workers: int) -> None:
    flist, store, blocks, _ = release(tmp_path, files=12)

    async def run() -> list[asyncio.Task[object]]:
        failing = FailingStore(store.root, blocks[5][0].id)
        with pytest.raises(StoreError, match="connection reset"):
            await materialize(flist, tmp_path / "dest", store=failing, cache=BlockCache(tmp_path / "c"),
                              workers=workers)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(run()) == []
    assert not (tmp_path / "dest").exists()


class SlowAndFailingStore(AsyncOnlyDirStore):
    """Fails one block at once and serves another only after a long while."""

    def __init__(self, root: Path, bad: bytes, slow: bytes) -> None:
        super().__init__(root)
        self.bad, self.slow = bad, slow

    async def get(self, block_id: bytes) -> bytes:
        if block_id == self.bad:
            raise StoreError(f"{self.url}: connection reset")
        if block_id == self.slow:
            await asyncio.sleep(0.3)
        return await super().get(block_id)


def test_a_failed_fetch_in_a_job_of_several_files_stops_the_others_fetches(tmp_path: Path) -> None:
    # small files travel to a child as one job, their missing blocks fetched side by side first: when
    # one fetch fails, the other files' fetches are stopped, not left to fill the cache after the end
    rng = random.Random(9)
    store = DirStore(tmp_path / "blocks")
    entries, refs = [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755)], []
    for i in range(4):
        content = rng.randbytes(3000 + i)
        ref, stored = encrypt_block(content, "v2")
        asyncio.run(store.put(ref.id, stored))
        refs.append(ref)
        entries.append(Entry(f"/s{i}", EntryKind.FILE, stat.S_IFREG | 0o644, size=len(content),
                             blocks=(ref,)))
    write_flist(tmp_path / "rel.fl", entries)
    cache = BlockCache(tmp_path / "cache")

    async def run() -> list[asyncio.Task[object]]:
        remote = SlowAndFailingStore(store.root, bad=refs[1].id, slow=refs[2].id)
        with pytest.raises(StoreError, match="connection reset"):
            await materialize(tmp_path / "rel.fl", tmp_path / "dest", store=remote, cache=cache, workers=1)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(run()) == []
    assert not (tmp_path / "dest").exists()
    assert cache.get(refs[2].id) is None  # the slow fetch was stopped, not cached after the failure

