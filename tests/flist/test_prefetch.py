"""A partial materialize from a remote store lacking few blocks fetches them all before writing, and
then writes each file in one hop (``RemoteBlocks.prefetch``); with more, the windows fetch them as
before. Against a real http:// store (``tests/support/counting_store.py``, its own process)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zos_upgrade.flist.remote_blocks as remote_blocks
import zos_upgrade.flist.thread_writer as thread_writer
from tests.support.counting_store import requested
from tests.support.hub import HubFactory, start_hub
from tests.support.local_releases import packed
from tests.support.procs import free_port, serving
from zos_upgrade.flist import BLOCK_SIZE, open_flist
from zos_upgrade.flist.filewrite import FileBlockMissing
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.stores import BlockMissing, DirStore, HttpStore

REPO = Path(__file__).resolve().parents[2]
__all__ = ["start_hub"]  # the fixture, used by name

TREE = {
    "etc/motd": b"hello\n",
    "data/a.bin": os.urandom(70_000),
    "data/b.bin": os.urandom(BLOCK_SIZE + 5_000),  # two blocks
    "data/c.bin": os.urandom(30_000),
    "data/unchosen.bin": os.urandom(40_000),
}
CHOSEN = {"/data/a.bin", "/data/b.bin", "/data/c.bin"}


class Served:
    def __init__(self, flist: Path, url: str, log: Path) -> None:
        self.flist, self.url, self.log = flist, url, log


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    flist, blocks = packed(tmp_path, "rel.fl", TREE)
    port, log = free_port(), tmp_path / "requests.log"
    cmd = [sys.executable, "-m", "tests.support.counting_store", "--dir", str(blocks), "--port", str(port),
           "--log", str(log)]
    with serving(cmd, port, cwd=REPO):
        yield Served(flist, f"http://127.0.0.1:{port}", log)


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path of every file each thread hop wrote to (one entry per hop)."""
    seen: list[str] = []
    write_blocks = thread_writer.write_blocks

    def counted(source: Any, entry: Any, *rest: Any, **kw: Any) -> Any:
        seen.append(entry.path)
        return write_blocks(source, entry, *rest, **kw)

    monkeypatch.setattr(thread_writer, "write_blocks", counted)
    return seen


def _blocks_of(flist: Path, paths: set[str]) -> set[str]:
    with open_flist(flist) as reader:
        return {ref.id.hex() for e in reader.entries() if e.path in paths for ref in e.blocks}


def _partial(served: Served, dest: Path) -> Any:
    return asyncio.run(materialize(served.flist, dest, store=HttpStore(served.url), workers=0,
                                   only=CHOSEN.__contains__))


def test_few_missing_blocks_are_fetched_up_front_and_each_file_written_in_one_hop(
        served: Served, tmp_path: Path, hops: list[str]) -> None:
    dest = tmp_path / "dest"
    report = _partial(served, dest)
    for path in CHOSEN:
        assert (dest / path.lstrip("/")).read_bytes() == TREE[path.lstrip("/")]
    assert not (dest / "data/unchosen.bin").exists() and not (dest / "etc").exists()
    assert sorted(hops) == sorted(CHOSEN)  # one hop a file: no hop waited for a fetch
    wanted = _blocks_of(served.flist, CHOSEN)
    assert requested(served.log) == wanted  # each block once, nothing unchosen
    assert report.blocks_fetched == len(wanted) == 4


def test_more_missing_blocks_than_the_bound_go_through_the_windows(
        served: Served, tmp_path: Path, hops: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_blocks, "PREFETCH_MAX_BLOCKS", 3)  # the chosen files lack 4
    dest = tmp_path / "dest"
    report = _partial(served, dest)
    for path in CHOSEN:
        assert (dest / path.lstrip("/")).read_bytes() == TREE[path.lstrip("/")]
    assert len(hops) == 2 * len(CHOSEN)  # each file: a hop that stops at its first block, then one
    assert report.blocks_fetched == 4 and requested(served.log) == _blocks_of(served.flist, CHOSEN)


def test_a_block_the_store_lacks_fails_the_file_that_needs_it_and_leaves_nothing(
        served: Served, tmp_path: Path) -> None:
    with open_flist(served.flist) as reader:
        victim = next(e for e in reader.entries() if e.path == "/data/c.bin").blocks[0].id.hex()
    blocks = tmp_path / "blocks"
    (blocks / victim[:2] / victim).unlink()
    dest = tmp_path / "dest"
    with pytest.raises(FileBlockMissing, match=r"/data/c\.bin: block 0"):
        _partial(served, dest)
    assert not dest.exists()


def test_a_dir_store_answers_a_block_it_lacks_without_a_worker_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A packer's ``dir://`` route the node does not have is tried for every block: a miss is a
    stat on the event loop, not a thread hop (which can wait a whole GIL switch interval)."""
    store = DirStore(tmp_path / "absent")

    def no_threads(*_args: Any, **_kw: Any) -> Any:
        raise AssertionError("a worker thread was asked for")

    monkeypatch.setattr(asyncio, "to_thread", no_threads)
    with pytest.raises(BlockMissing):
        asyncio.run(store.get(b"\x01" * 32))


def test_from_our_hub_the_prefetch_is_one_batch_get(start_hub: HubFactory, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, hops: list[str]) -> None:
    """Against the real hub (``zos-upgrade hub serve``, its own process), which answers batches: the
    partial run's blocks arrive in one request, and each file is written in one hop."""
    requests: list[str] = []
    request = HttpStore._request

    async def counted(self: HttpStore, method: str, url: str, **kw: Any) -> Any:
        requests.append(url.rsplit("/", 1)[-1])
        return await request(self, method, url, **kw)

    monkeypatch.setattr(HttpStore, "_request", counted)
    with start_hub(blocks=True) as hub:
        assert hub.blocks is not None
        flist, _ = packed(tmp_path, "rel.fl", TREE, hub.blocks)
        dest = tmp_path / "dest"
        report = asyncio.run(materialize(flist, dest, store=HttpStore(f"{hub.url}/blocks"), workers=0,
                                         only=CHOSEN.__contains__))
    for path in CHOSEN:
        assert (dest / path.lstrip("/")).read_bytes() == TREE[path.lstrip("/")]
    assert len(requests) == 1 and requests[0].startswith("batch?ids=")
    assert sorted(hops) == sorted(CHOSEN) and report.blocks_fetched == 4


def test_a_partial_runs_writers_fsync_their_files_and_the_renames_do_not_again(
        served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Few files: each writer thread fsyncs its file as it closes it (in parallel), so the rename
    step that follows only renames: every file fsynced once, all before the first rename."""
    import stat

    from zos_upgrade.flist import durability

    events: list[str] = []
    real_fsync, flush_and_rename = os.fsync, durability.Durability._flush_and_rename

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            events.append("fsync-file")
        real_fsync(fd)

    def renaming(self: Any, batch: Any) -> None:
        events.append("renames")
        flush_and_rename(self, batch)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(durability.Durability, "_flush_and_rename", renaming)
    _partial(served, tmp_path / "dest")
    assert events == ["fsync-file"] * len(CHOSEN) + ["renames"]
