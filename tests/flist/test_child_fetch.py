"""File-writer processes that fetch their own blocks from a plain ``http://`` store (issue 19 item 2).

Against a real uvicorn server on loopback (``tests/flist/stores/test_http.py``'s block app): the
children fetch, verify and write every block, the parent none; what they cannot fetch the simple way
the parent fetches through ``HttpStore`` (its retries); a corrupt or oversized answer fails the run
and leaves nothing behind; ``keep_fetched=False`` adds nothing to the block cache, while the default
keeps every block so a later run (a self-update's re-mount) needs no network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flist.stores.blocks import V2_DATA, V2_REF
from tests.flist.stores.test_http import http_blocks
from tests.flist.test_roundtrip import snapshot
from tests.flist.test_writer_pool import make_tree
from tests.support.hub import HubFactory, start_hub
from tests.support.procs import free_port
from zos_upgrade.flist.blocks import BlockCorrupt
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.formats import open_flist
from zos_upgrade.flist.materialize import MaterializeReport, materialize
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import BlockMissing, DirStore, HttpStore, Router, StoreError
from zos_upgrade.flist.stores.http_blocking import BlockingHttpReader, RemoteUnavailable
from zos_upgrade.flist.writer_child import _http_reader_for, open_store_spec
from zos_upgrade.net import Backoff, RetryPolicy

__all__ = ["http_blocks", "start_hub"]  # server fixtures, shared with the store's and hub's tests

FAST = RetryPolicy(attempts=2, backoff=Backoff(base=0.001, cap=0.001), deadline=5)


@pytest.fixture
def parent_gets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The block ids this process's ``HttpStore`` was asked for (the children's fetches are not)."""
    asked: list[bytes] = []
    real = HttpStore.get

    async def get(self: HttpStore, block_id: bytes) -> bytes:
        asked.append(block_id)
        return await real(self, block_id)

    monkeypatch.setattr(HttpStore, "get", get)
    yield asked


def release(tmp_path: Path, root: Path, name: str) -> tuple[Path, Path, Path]:
    """A packed tree whose blocks the server has under ``<root>/<name>``: (src, flist, blocks dir)."""
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src, files=20)
    blocks = root / name
    asyncio.run(pack(src, tmp_path / "rel.fl", DirStore(blocks)))
    return src, tmp_path / "rel.fl", blocks


def unpack(flist: Path, dest: Path, url: str, *, workers: int = 2, cache: BlockCache | None = None,
           keep_fetched: bool = True) -> MaterializeReport:
    async def run() -> MaterializeReport:
        store = HttpStore(url, retry=FAST)
        try:
            return await materialize(flist, dest, store=store, workers=workers, cache=cache,
                                     keep_fetched=keep_fetched)
        finally:
            await store.aclose()
    return asyncio.run(run())


def test_children_fetch_every_block_themselves(http_blocks: tuple[str, Path], tmp_path: Path,
                                               parent_gets: list[bytes]) -> None:
    base, root = http_blocks
    src, flist, _ = release(tmp_path, root, "own")
    two = unpack(flist, tmp_path / "two", f"{base}/blocks/own")
    assert two.writer_processes == 2 and parent_gets == []
    one = unpack(flist, tmp_path / "one", f"{base}/blocks/own", workers=0)
    assert parent_gets  # the same run in one process fetches through HttpStore
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one") == snapshot(src)
    # every distinct block fetched (a block two files share may be fetched by both: without a
    # cache nothing remembers it), the same bytes written whoever fetched them
    with open_flist(flist) as reader:
        distinct = {ref.id for entry in reader.entries() for ref in entry.blocks}
    assert two.blocks_fetched >= len(distinct) and one.blocks_fetched >= len(distinct)
    assert two.bytes_written == one.bytes_written == sum(p.stat().st_size for p in src.rglob("*")
                                                         if p.is_file() and not p.is_symlink())


def test_chunked_answers_are_read_by_the_children(http_blocks: tuple[str, Path], tmp_path: Path,
                                                  parent_gets: list[bytes]) -> None:
    base, root = http_blocks
    src, flist, _ = release(tmp_path, root, "chunks")
    report = unpack(flist, tmp_path / "dest", f"{base}/chunked/chunks")
    assert report.writer_processes == 2 and parent_gets == []
    assert snapshot(tmp_path / "dest") == snapshot(src)


def test_keep_fetched_false_writes_each_block_only_into_its_file(http_blocks: tuple[str, Path],
                                                                 tmp_path: Path) -> None:
    base, root = http_blocks
    src, flist, _ = release(tmp_path, root, "nokeep")
    cache = BlockCache(tmp_path / "cache")
    for workers in (0, 2):
        report = unpack(flist, tmp_path / f"dest{workers}", f"{base}/blocks/nokeep", workers=workers,
                        cache=cache, keep_fetched=False)
        assert report.blocks_fetched > 0 and report.blocks_from_cache == 0
        assert snapshot(tmp_path / f"dest{workers}") == snapshot(src)
        assert not cache.root.exists() or not any(p.is_file() for p in cache.root.rglob("*"))


def test_kept_blocks_rebuild_the_tree_without_the_network(http_blocks: tuple[str, Path],
                                                          tmp_path: Path) -> None:
    """What a self-update continuation relies on: the default keeps every block a child fetched."""
    base, root = http_blocks
    src, flist, _ = release(tmp_path, root, "keep")
    cache = BlockCache(tmp_path / "cache")
    first = unpack(flist, tmp_path / "first", f"{base}/blocks/keep", cache=cache)
    assert first.writer_processes == 2 and first.blocks_fetched > 0
    dead = f"http://127.0.0.1:{free_port()}/blocks"  # nobody listens: any fetch would fail the run
    again = unpack(flist, tmp_path / "again", dead, cache=cache)
    assert again.blocks_fetched == 0 and again.blocks_from_cache > 0
    assert snapshot(tmp_path / "again") == snapshot(src)


def test_a_corrupt_block_served_to_a_child_fails_the_run(http_blocks: tuple[str, Path],
                                                         tmp_path: Path) -> None:
    base, root = http_blocks
    _src, flist, blocks = release(tmp_path, root, "corrupt")
    victim = max((p for p in blocks.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = victim.read_bytes()
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    cache = BlockCache(tmp_path / "cache")
    with pytest.raises(BlockCorrupt, match=victim.name):
        unpack(flist, tmp_path / "dest", f"{base}/blocks/corrupt", cache=cache)
    assert not (tmp_path / "dest").exists()
    assert not cache.path_for(bytes.fromhex(victim.name)).exists()  # never cached


def test_a_child_the_server_refuses_leaves_its_files_to_the_parent(http_blocks: tuple[str, Path],
                                                                   tmp_path: Path,
                                                                   parent_gets: list[bytes]) -> None:
    base, root = http_blocks
    src, flist, _ = release(tmp_path, root, "flaky")
    report = unpack(flist, tmp_path / "dest", f"{base}/flaky/flaky")
    assert report.writer_processes == 2 and parent_gets  # the parent fetched what children could not
    assert snapshot(tmp_path / "dest") == snapshot(src)


def test_an_oversized_answer_fails_the_run(http_blocks: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_blocks
    _src, flist, _ = release(tmp_path, root, "huge")
    with pytest.raises(StoreError, match="more than"):
        unpack(flist, tmp_path / "dest", f"{base}/huge/huge")
    assert not (tmp_path / "dest").exists()


def test_the_blocking_reader_prefetches_in_any_order_and_names_what_is_missing(
        http_blocks: tuple[str, Path]) -> None:
    base, root = http_blocks
    for rel in (f"{V2_REF.id.hex()[:2]}/{V2_REF.id.hex()}",):
        (root / "unit" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "unit" / rel).write_bytes(V2_DATA)
    reader = BlockingHttpReader(f"{base}/blocks/unit", ahead=2, connections=2)
    try:
        absent = bytes(32)
        reader.prefetch([absent, V2_REF.id, absent[:-1] + b"\1"])
        assert reader.read_block_file(V2_REF.id) == (V2_DATA, None)  # skips the one asked for first
        with pytest.raises(BlockMissing, match=absent.hex()):
            reader.read_block_file(absent)
        assert reader.read_block_file(V2_REF.id) == (V2_DATA, None)  # again: fetched directly
    finally:
        reader.close()
    with pytest.raises(RemoteUnavailable, match="cannot connect"):
        BlockingHttpReader(f"http://127.0.0.1:{free_port()}/blocks").read_block_file(V2_REF.id)
    with pytest.raises(StoreError, match="plain http"):
        BlockingHttpReader("https://example.test/blocks")


def test_children_fetch_from_our_hub_in_batches(start_hub: HubFactory, tmp_path: Path,
                                               parent_gets: list[bytes]) -> None:
    with start_hub(blocks=True) as hub:
        assert hub.blocks is not None
        src, flist, _ = release(tmp_path, hub.blocks.parent, hub.blocks.name)
        report = unpack(flist, tmp_path / "dest", f"{hub.url}/blocks")
        assert report.writer_processes == 2 and parent_gets == []
        assert snapshot(tmp_path / "dest") == snapshot(src)
        with open_flist(flist) as reader_of:
            ids = list(dict.fromkeys(ref.id for entry in reader_of.entries() for ref in entry.blocks))
        reader = BlockingHttpReader(f"{hub.url}/blocks")
        try:
            reader.prefetch(ids)
            assert all(reader.read_block_file(i)[0] == (hub.blocks / i.hex()[:2] / i.hex()).read_bytes()
                       for i in ids)
            assert reader.batches is True
        finally:
            reader.close()
        # a corrupt block in a batch fails the run as it does alone, and leaves nothing behind
        victim = max((p for p in hub.blocks.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        data = victim.read_bytes()
        victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        with pytest.raises(BlockCorrupt, match=victim.name):
            unpack(flist, tmp_path / "bad", f"{hub.url}/blocks")
        assert not (tmp_path / "bad").exists()


def test_blocks_a_dir_route_lacks_are_prefetched_from_the_http_route_after_it(tmp_path: Path) -> None:
    """A node rarely holds the packer's dir:// store its flist records first: the blocks are then
    asked for ahead from the http:// route behind it (else a first install prefetched nothing)."""
    held = DirStore(tmp_path / "packer")
    asyncio.run(held.put(V2_REF.id, V2_DATA))
    url = f"http://127.0.0.1:{free_port()}/blocks"
    store = open_store_spec(("router", ((0, 255, held.url, str(held.root)), (0, 255, url, None))))
    assert isinstance(store, Router)
    http = store.store_for(store.routes[1])
    assert isinstance(http, BlockingHttpReader)
    assert _http_reader_for(store, V2_REF.id) is None  # the dir:// route has it: read there
    assert _http_reader_for(store, bytes(32)) is http
    gone = open_store_spec(("router", ((0, 255, "dir:///nowhere", "/nowhere"), (0, 255, url, None))))
    assert isinstance(gone, Router) and _http_reader_for(gone, V2_REF.id) is gone.store_for(gone.routes[1])
