"""materialize's two ways of fetching a block the cache lacks, with the same checks and counts:

- a local store (``dir://``, has ``read_block``): fetched, verified, cached and written in the worker
  thread that writes the file, threads sharing one fetch of a block;
- any other store (HTTP, zdb, a router): fetched on the event loop, then handed to cache-writer
  threads; until written, the block is served from memory to the files that need it.
"""

from __future__ import annotations

import asyncio
import random
import stat
from pathlib import Path

import pytest

from zos_upgrade.flist.blocks import BLOCK_SIZE, BlockCorrupt, encrypt_block
from zos_upgrade.flist.cache import BlockCache, CacheError
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind
from zos_upgrade.flist.reader import write_flist
from zos_upgrade.flist.stores import BlockMissing, DirStore


class CountingStore:
    """A real ``DirStore`` seen only through the async store protocol (no ``read_block``): the path
    HTTP and zdb stores take. Counts the reads it serves."""

    def __init__(self, root: Path) -> None:
        self.inner = DirStore(root)
        self.url = self.inner.url
        self.gets = 0

    async def get(self, block_id: bytes) -> bytes:
        self.gets += 1
        return await self.inner.get(block_id)

    async def put(self, block_id: bytes, data: bytes) -> None:
        await self.inner.put(block_id, data)

    async def has(self, block_id: bytes) -> bool:
        return await self.inner.has(block_id)

    async def aclose(self) -> None:
        return None


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


@pytest.mark.parametrize("local", [True, False], ids=["local-store", "async-store"])
def test_a_cold_run_fetches_each_block_once_caches_all_writes_every_file(tmp_path: Path, local: bool) -> None:
    flist, store, blocks, shared = release(tmp_path)
    counting = CountingStore(store.root)
    cache = BlockCache(tmp_path / "cache")
    report = asyncio.run(materialize(flist, tmp_path / "dest", store=store if local else counting,
                                     cache=cache, concurrency=8))
    assert report.files == 12
    assert report.blocks_fetched == len(blocks) == 13
    assert report.bytes_downloaded == sum(len(stored) for _, stored in blocks)
    if not local:
        assert counting.gets == 13
    # every block is in the cache, verified, by the time materialize returns
    assert all(cache.get(ref.id) == stored for ref, stored in blocks)
    for i in range(12):
        data = (tmp_path / "dest" / f"f{i:02d}").read_bytes()
        assert data[:BLOCK_SIZE] == shared and len(data) == BLOCK_SIZE + 1000 + i


def test_a_corrupt_block_in_a_local_store_is_named_and_not_cached(tmp_path: Path) -> None:
    flist, store, blocks, _ = release(tmp_path, files=1)
    ref, stored = blocks[1]
    store.root.joinpath(ref.id.hex()[:2], ref.id.hex()).write_bytes(stored[:-1] + b"\0")
    cache = BlockCache(tmp_path / "cache")
    expected = rf"/f00: block 1: from dir://.*: block {ref.id.hex()}: stored bytes hash"
    with pytest.raises(BlockCorrupt, match=expected):
        asyncio.run(materialize(flist, tmp_path / "dest", store=store, cache=cache))
    assert not (tmp_path / "dest").exists()
    assert not cache.has(ref.id)


def test_a_block_missing_from_a_local_store_names_the_file_and_its_position(tmp_path: Path) -> None:
    flist, store, blocks, _ = release(tmp_path, files=1)
    ref, _ = blocks[1]
    store.root.joinpath(ref.id.hex()[:2], ref.id.hex()).unlink()
    with pytest.raises(BlockMissing, match=rf"/f00: block 1 \({ref.id.hex()}\) is missing; tried: dir://"):
        asyncio.run(materialize(flist, tmp_path / "dest", store=store, cache=BlockCache(tmp_path / "cache")))
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("local", [True, False], ids=["local-store", "async-store"])
def test_a_cache_that_cannot_be_written_fails_the_run_and_cleans_up(tmp_path: Path, local: bool) -> None:
    flist, store, _, _ = release(tmp_path, files=3)
    (tmp_path / "cache").write_bytes(b"not a directory")
    with pytest.raises(CacheError, match="cannot write block"):
        asyncio.run(materialize(flist, tmp_path / "dest", store=store if local else CountingStore(store.root),
                                cache=BlockCache(tmp_path / "cache")))
    assert not (tmp_path / "dest").exists()


def test_a_second_run_through_an_async_store_reads_nothing_from_it(tmp_path: Path) -> None:
    flist, store, _, _ = release(tmp_path)
    cache = BlockCache(tmp_path / "cache")
    asyncio.run(materialize(flist, tmp_path / "one", store=CountingStore(store.root), cache=cache))
    again = CountingStore(store.root)
    report = asyncio.run(materialize(flist, tmp_path / "two", store=again, cache=cache))
    assert (report.blocks_fetched, report.blocks_from_cache, again.gets) == (0, 24, 0)
