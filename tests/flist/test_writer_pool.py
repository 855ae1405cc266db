"""materialize through file-writer processes: the same tree, the same report, the same refusals as
in one process; children that end with the run, die with their parent, and whose failures surface."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.flist.test_roundtrip import snapshot  # everything a round trip must keep
from tests.support.procs import pids_running
from zos_upgrade.flist import process_writer
from zos_upgrade.flist.blocks import BlockCorrupt, encrypt_block
from zos_upgrade.flist.cache import BlockCache, CacheError
from zos_upgrade.flist.filewrite import DIR_OPEN, FileBlockMissing
from zos_upgrade.flist.formats import open_flist, write_flist
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError, HostileFlist
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import BlockMissing, DirStore, Route, Router, StoreError
from zos_upgrade.flist.writer_child import (
    describe_error,
    describe_store,
    job_file,
    read_message,
    rebuild_error,
    serve,
)
from zos_upgrade.flist.writer_pool import WriterPool

FILE = stat.S_IFREG | 0o644
DIR = stat.S_IFDIR | 0o755


def make_tree(root: Path, files: int = 40) -> None:
    """Files of many sizes (empty, one block, several blocks, shared content), modes, mtimes, links."""
    for index in range(files):
        where = root / f"d{index % 4}" / f"f{index:03d}"
        where.parent.mkdir(parents=True, exist_ok=True)
        size = [0, 1, 4_000, 700_000, 1_100_000][index % 5]
        where.write_bytes(os.urandom(size) if index % 3 else bytes([index % 7]) * size)
        os.chmod(where, 0o600 + index % 2 * 0o155)
        os.utime(where, (1_500_000_000 + index, 1_500_000_000 + index))
    (root / "d0" / "same-a").write_bytes(b"shared" * 100_000)
    (root / "d1" / "same-b").write_bytes(b"shared" * 100_000)
    os.symlink("f000", root / "d0" / "link")
    if files > 2:
        os.chmod(root / "d2", 0o750)


def packed(tmp_path: Path, files: int = 40) -> tuple[Path, Path, Path]:
    src, blocks, flist = tmp_path / "src", tmp_path / "blocks", tmp_path / "rel.fl"
    src.mkdir()
    make_tree(src, files)
    asyncio.run(pack(src, flist, DirStore(blocks), routes=[Route(0, 255, f"dir://{blocks}")]))
    return src, blocks, flist


def writer_children() -> list[int]:
    """Pids of file-writer processes whose parent is this test process."""
    return pids_running("writer_child", parent=os.getpid())


def test_processes_write_the_same_tree_and_report_as_one_process(tmp_path: Path) -> None:
    src, blocks, flist = packed(tmp_path)
    one = asyncio.run(materialize(flist, tmp_path / "one", store=DirStore(blocks), workers=0,
                                  cache=BlockCache(tmp_path / "cache-one")))
    seen: list[int] = []
    two = asyncio.run(materialize(flist, tmp_path / "two", store=DirStore(blocks), workers=2,
                                  cache=BlockCache(tmp_path / "cache-two"), progress=seen.append))
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one") == snapshot(src)
    assert (one.writer_processes, two.writer_processes) == (0, 2)
    assert two.bytes_written == one.bytes_written == sum(seen) > 0
    assert two.files == one.files and two.entries == one.entries
    with open_flist(flist) as reader:
        refs = [ref.id for e in reader.entries() for ref in e.blocks]
    # threads read each distinct block once; each of two processes may read a block files share
    # once (then counted twice), never more
    assert one.blocks_fetched == len(set(refs)) < len(refs)
    assert len(set(refs)) <= two.blocks_fetched <= 2 * len(set(refs))
    assert two.blocks_fetched + two.blocks_from_cache <= len(refs)
    assert writer_children() == []
    # warm: every block from the cache the children filled, nothing read from the store
    warm = asyncio.run(materialize(flist, tmp_path / "warm", store=DirStore(blocks), workers=2,
                                   cache=BlockCache(tmp_path / "cache-two")))
    assert (warm.blocks_fetched, warm.bytes_downloaded) == (0, 0)
    assert warm.blocks_from_cache == len(refs)  # every block of every file, shared ones each time
    assert snapshot(tmp_path / "warm") == snapshot(src)


def test_the_flists_own_dir_routes_and_no_cache(tmp_path: Path) -> None:
    src, _blocks, flist = packed(tmp_path, files=12)
    report = asyncio.run(materialize(flist, tmp_path / "dest", workers=1))  # a Router of dir:// routes
    assert report.writer_processes == 1 and report.blocks_from_cache == 0
    assert snapshot(tmp_path / "dest") == snapshot(src)


def test_a_v1_flist_through_processes(tmp_path: Path, golden: Path) -> None:
    flist = next(golden.glob("*.flist"))
    store = DirStore(golden / "blocks")
    one = asyncio.run(materialize(flist, tmp_path / "one", store=store, workers=0))
    two = asyncio.run(materialize(flist, tmp_path / "two", store=store, workers=2))
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one")
    assert two.writer_processes == 2 and two.bytes_written == one.bytes_written > 0


def test_automatic_processes_only_for_a_big_enough_tree(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    ready: list[int] = []
    real_start = WriterPool.start

    async def start(pool: WriterPool) -> None:
        started.append(pool.size)
        await real_start(pool)
        ready.append(pool.size)

    monkeypatch.setattr(WriterPool, "start", start)
    monkeypatch.setattr(process_writer, "_auto_workers", lambda: 2)
    src, blocks, flist = packed(tmp_path, files=30)
    monkeypatch.setattr(process_writer, "_POOL_AFTER_BYTES", 10**12)
    monkeypatch.setattr(process_writer, "_POOL_AFTER_FILES", 1000)
    small = asyncio.run(materialize(flist, tmp_path / "small", store=DirStore(blocks)))
    assert small.writer_processes == 0 and started == []  # below both bounds: never started
    monkeypatch.setattr(process_writer, "_POOL_AFTER_FILES", 5)

    def slow_walk(_count: int) -> None:
        # on the event loop: the walk waits (up to ~4 s over its 38 entries, on a loaded machine too)
        # while the children boot; once their start is done it no longer waits
        if not ready:
            time.sleep(0.1)

    big = asyncio.run(materialize(flist, tmp_path / "big", store=DirStore(blocks), progress=slow_walk))
    assert big.writer_processes == 2
    assert snapshot(tmp_path / "big") == snapshot(tmp_path / "small") == snapshot(src)


def test_only_dir_and_plain_http_stores_are_reopened_in_a_child(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _src, blocks, _flist = packed(tmp_path, files=2)
    assert describe_store(DirStore(blocks)) is not None
    assert describe_store(Router([Route(0, 255, f"dir://{blocks}")])) is not None
    # a child fetches from a plain http:// store itself (its root is None: fetched, not opened)
    mixed = Router([Route(0, 127, f"dir://{blocks}"), Route(128, 255, "http://127.0.0.1:9/")])
    assert describe_store(mixed) == ("router", ((0, 127, f"dir://{blocks}", str(blocks)),
                                                (128, 255, "http://127.0.0.1:9/", None)))
    # https, or any proxy in the environment: only this process's httpx client reads the store
    secure = Router([Route(0, 127, f"dir://{blocks}"), Route(128, 255, "https://x.test/")])
    assert describe_store(secure) is None
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert describe_store(Router([Route(0, 255, "http://127.0.0.1:9/")])) is None


def test_negative_workers_is_refused(tmp_path: Path) -> None:
    _src, blocks, flist = packed(tmp_path, files=2)
    with pytest.raises(ValueError, match="workers must be 0 or more"):
        asyncio.run(materialize(flist, tmp_path / "dest", store=DirStore(blocks), workers=-1))
    assert not (tmp_path / "dest").exists()


# --- failures inside a child --------------------------------------------------------------------


def one_file_flist(tmp_path: Path, content: bytes, *,
                   size: int | None = None) -> tuple[Path, DirStore, BlockRef]:
    store = DirStore(tmp_path / "blocks")
    ref, stored = encrypt_block(content, "v2")
    asyncio.run(store.put(ref.id, stored))
    flist = tmp_path / "one.fl"
    write_flist(flist, [Entry("/", EntryKind.DIR, DIR), Entry("/d", EntryKind.DIR, DIR),
                        Entry("/d/f", EntryKind.FILE, FILE, size=len(content) if size is None else size,
                              blocks=(ref,))])
    return flist, store, ref


def test_a_missing_block_names_file_block_and_store_and_cleans_up(tmp_path: Path) -> None:
    flist, store, ref = one_file_flist(tmp_path, b"content" * 1000)
    (store.root / ref.id.hex()[:2] / ref.id.hex()).unlink()
    with pytest.raises(FileBlockMissing, match=f"/d/f: block 0 \\({ref.id.hex()}\\) is missing") as caught:
        asyncio.run(materialize(flist, tmp_path / "dest", store=store, workers=1))
    assert caught.value.block_id == ref.id and list(caught.value.stores) == [store.url]
    assert not (tmp_path / "dest").exists()
    assert writer_children() == []


def test_a_corrupt_block_and_a_size_lie_are_refused_in_a_child(tmp_path: Path) -> None:
    flist, store, ref = one_file_flist(tmp_path, b"content" * 1000)
    path = store.root / ref.id.hex()[:2] / ref.id.hex()
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    (tmp_path / "dest").mkdir()
    with pytest.raises(BlockCorrupt, match="/d/f: block 0"):
        asyncio.run(materialize(flist, tmp_path / "dest", store=store, workers=1))
    assert list((tmp_path / "dest").iterdir()) == []  # an empty dest given is left empty

    liar, store, _ = one_file_flist(tmp_path / "liar", b"content" * 1000, size=10)
    with pytest.raises(HostileFlist, match="more than the 10 bytes"):
        asyncio.run(materialize(liar, tmp_path / "dest2", store=store, workers=1))
    assert not (tmp_path / "dest2").exists()


def test_a_child_killed_holding_a_file_fails_the_run_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _src, blocks, flist = packed(tmp_path, files=20)
    monkeypatch.setattr(WriterPool, "child_module", "tests.support.dying_writer")
    died = r"the file writer process \d+ exited with code -9 before writing it"
    with pytest.raises(FlistError, match=died):
        asyncio.run(materialize(flist, tmp_path / "dest", store=DirStore(blocks), workers=1))
    assert not (tmp_path / "dest").exists()
    assert writer_children() == []


def test_children_that_cannot_start_leave_the_work_to_this_process(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    src, blocks, flist = packed(tmp_path, files=10)
    monkeypatch.setattr(WriterPool, "child_module", "zos_upgrade.no_such_module")
    with caplog.at_level(logging.WARNING):
        report = asyncio.run(materialize(flist, tmp_path / "dest", store=DirStore(blocks), workers=2))
    assert report.writer_processes == 0 and report.files == 12
    assert snapshot(tmp_path / "dest") == snapshot(src)
    assert any(r.getMessage() == "file writer process exited" for r in caplog.records)


def test_a_childs_log_records_reach_the_parents_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    flist, store, ref = one_file_flist(tmp_path, b"content" * 1000)
    cache = BlockCache(tmp_path / "cache")
    cache.path_for(ref.id).parent.mkdir(parents=True)
    cache.path_for(ref.id).write_bytes(b"not the block")  # found in the cache, fails, fetched again
    with caplog.at_level(logging.INFO):
        report = asyncio.run(materialize(flist, tmp_path / "dest", store=store, cache=cache, workers=1))
    assert (report.blocks_fetched, report.blocks_from_cache) == (1, 0)
    message = "cached block failed verification; fetching it again"
    warned = [r for r in caplog.records if r.getMessage() == message]
    assert warned and warned[0].block == ref.id.hex()
    assert (tmp_path / "dest" / "d" / "f").read_bytes() == b"content" * 1000


def test_children_die_with_their_parent(tmp_path: Path) -> None:
    _src, blocks, flist = packed(tmp_path, files=60)
    script = textwrap.dedent(f"""
        import asyncio, os, sys, time
        from pathlib import Path
        from zos_upgrade.flist.materialize import materialize
        from zos_upgrade.flist.stores import DirStore
        def stall(_count):
            print("writing", flush=True)
            time.sleep(60)  # the parent hangs; its children are waiting for more files
        asyncio.run(materialize(Path({str(flist)!r}), Path({str(tmp_path / "dest")!r}),
                                store=DirStore(Path({str(blocks)!r})), workers=2, progress=stall))
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"writing\n"
        children = pids_running("writer_child", parent=parent.pid)
        assert len(children) == 2
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(children) & set(pids_running("writer_child")):
        time.sleep(0.05)
    assert not set(children) & set(pids_running("writer_child"))


# --- the child loop itself, in this process -----------------------------------------------------


def test_a_child_starts_without_the_readers_the_network_stack_or_asyncio() -> None:
    """What a child imports is what writing files takes: its start-up is paid once per core per run."""
    heavy = ["asyncio", "httpx", "redis", "capnp", "yaml", "sqlite3", "zos_upgrade.net", "zos_upgrade.http11",
             "zos_upgrade.flist.formats", "zos_upgrade.flist.reader", "zos_upgrade.flist.v1",
             "zos_upgrade.flist.v2", "zos_upgrade.flist.materialize"]
    code = textwrap.dedent(f"""
        import sys
        import zos_upgrade.flist.writer_child
        print(" ".join(name for name in {heavy!r} if name in sys.modules) or "none")
    """)
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True,
                         timeout=60)
    assert out.stdout.split() == ["none"]


def test_the_child_never_writes_through_a_symlinked_directory(tmp_path: Path) -> None:
    # the parent refuses such entries first; a child refuses them again on its own (O_NOFOLLOW walk)
    content = b"secret" * 10
    ref, stored = encrypt_block(content, "v2")
    store = DirStore(tmp_path / "blocks")
    asyncio.run(store.put(ref.id, stored))
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    os.symlink(outside, dest / "d")
    setup = (os.open(dest, DIR_OPEN), None, describe_store(store), False, os.getppid())
    through_link = Entry("/d/f", EntryKind.FILE, FILE, len(content), 0, 0, 0, blocks=(ref,))
    plain = Entry("/g", EntryKind.FILE, FILE, len(content), 0, 0, 0, blocks=(ref,))
    out = io.BytesIO()
    serve([(1, (job_file(through_link, ".f.tmp"), job_file(plain, ".g.tmp")))], setup, out)
    replies = _replies(out.getvalue())
    assert replies[0][0] == "ready"
    job_id, results, _logs = replies[1]
    (status, (kind, args)), second = results
    assert (job_id, status, kind) == (1, "error", "HostileFlist")
    assert "'d' is not a real directory" in args[0]
    assert list(outside.iterdir()) == []
    # one file of a job failing does not stop the next one
    assert second[0] == "ok"
    assert (dest / ".g.tmp").read_bytes() == content


def _replies(data: bytes) -> list[tuple[object, ...]]:
    stream, out = io.BytesIO(data), []
    while (reply := read_message(stream)) is not None:
        out.append(reply)
    return out


@pytest.mark.parametrize("error", [
    HostileFlist("entry '/x' appears twice"),
    BlockCorrupt("block 00: stored bytes hash to 11"),
    CacheError("block cache /c: cannot write block 00"),
    StoreError("dir:///b: cannot read block file /b/00"),
    FlistError("something else about the flist"),
    FileBlockMissing("/a/b", 3, BlockMissing(b"\x01" * 32, ["dir:///b", "dir:///c"])),
    FileNotFoundError(2, "No such file or directory", "/dest/x"),
])
def test_errors_cross_the_pipe_with_their_type_and_fields(error: BaseException) -> None:
    rebuilt = rebuild_error(*describe_error(error))
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    if isinstance(error, FileBlockMissing):
        assert isinstance(rebuilt, FileBlockMissing)
        assert (rebuilt.path, rebuilt.index, rebuilt.block_id, rebuilt.stores) == (
            error.path, error.index, error.block_id, error.stores)


def test_an_unexpected_error_becomes_a_flist_error_with_its_message() -> None:
    rebuilt = rebuild_error(*describe_error(ZeroDivisionError("division by zero")))
    assert type(rebuilt) is FlistError
    assert str(rebuilt) == "file writer process failed: ZeroDivisionError: division by zero"


@pytest.mark.parametrize("garbage", ["bytes", "short", "wrong-id"])
def test_a_child_answering_garbage_is_stopped_and_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, garbage: str,
) -> None:
    # bytes that are no message; one result fewer than the job's files (none may go unanswered); or
    # an answer to a job that is not the one waiting
    _src, blocks, flist = packed(tmp_path, files=6)
    monkeypatch.setattr(WriterPool, "child_module", "tests.support.garbage_writer")
    monkeypatch.setenv("ZU_TEST_GARBAGE", garbage)
    with pytest.raises(FlistError, match=r"file writer process \d+ exited with code -9 before writing it"):
        asyncio.run(materialize(flist, tmp_path / "dest", store=DirStore(blocks), workers=1))
    assert any(r.getMessage() == "file writer process sent a malformed reply" for r in caplog.records)
    assert not (tmp_path / "dest").exists() and writer_children() == []


def test_a_cancelled_run_stops_its_children_and_cleans_up(tmp_path: Path) -> None:
    _src, blocks, flist = packed(tmp_path, files=60)

    async def scenario() -> None:
        started = asyncio.Event()
        run = asyncio.create_task(materialize(flist, tmp_path / "dest", store=DirStore(blocks), workers=2,
                                              progress=lambda _n: started.set()))
        await started.wait()
        assert len(writer_children()) == 2
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(scenario())
    assert not (tmp_path / "dest").exists()
    assert writer_children() == []


def test_children_still_starting_when_the_run_ends_are_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    src, blocks, flist = packed(tmp_path, files=10)
    monkeypatch.setattr(WriterPool, "child_module", "tests.support.slow_writer")
    monkeypatch.setattr(process_writer, "_POOL_AFTER_FILES", 1)
    monkeypatch.setattr(process_writer, "_auto_workers", lambda: 2)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        report = asyncio.run(materialize(flist, tmp_path / "dest", store=DirStore(blocks)))
    assert time.monotonic() - started < 4  # the children sleep 5 s before they could be ready
    assert report.writer_processes == 0 and snapshot(tmp_path / "dest") == snapshot(src)
    assert writer_children() == [] and not [r for r in caplog.records if r.levelno >= logging.WARNING]
