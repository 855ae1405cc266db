"""The writing strategies behind materialize's one FileWriter interface: each writes the same tree.

The driver picks worker threads (``ThreadFileWriter``) or file-writer processes
(``ProcessFileWriter``) from ``workers`` and whether a child can reach the blocks (a ``dir://``
store, or a block cache the parent fills from a remote store); whichever it picks, the tree and the
counts that do not depend on who wrote are the same.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.flist.test_roundtrip import snapshot
from tests.flist.test_writer_pool import make_tree, writer_children
from tests.support.stores import AsyncOnlyDirStore
from zos_upgrade.flist import materialize as materialize_module
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.file_writer import FileWriter
from zos_upgrade.flist.filewrite import WrittenFile
from zos_upgrade.flist.formats import open_flist
from zos_upgrade.flist.materialize import MaterializeReport, materialize
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.process_writer import ProcessFileWriter
from zos_upgrade.flist.stores import BlockStore, DirStore
from zos_upgrade.flist.thread_writer import ThreadFileWriter
from zos_upgrade.upgrade.manifest import digest_file

# (name, workers, remote store, with a cache, the strategy the driver must pick)
CASES = [
    ("threads from dir://", 0, False, False, ThreadFileWriter),
    ("processes from dir://", 2, False, False, ProcessFileWriter),
    ("threads fetching windows from a remote store", 0, True, True, ThreadFileWriter),
    ("processes from the cache the parent prefetches into", 2, True, True, ProcessFileWriter),
    ("threads: a remote store and no cache leave a child nothing to read", 2, True, False, ThreadFileWriter),
]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    work = tmp_path_factory.mktemp("strategies")
    src, blocks, flist = work / "src", work / "blocks", work / "rel.fl"
    src.mkdir()
    make_tree(src, files=24)
    asyncio.run(pack(src, flist, DirStore(blocks)))
    return src, blocks, flist


def _run(release: tuple[Path, Path, Path], dest: Path, workers: int, remote: bool, cached: bool,
         monkeypatch: pytest.MonkeyPatch,
         digests: dict[str, WrittenFile] | None = None) -> tuple[MaterializeReport, list[type[Any]]]:
    _src, blocks, flist = release
    picked: list[type[Any]] = []
    choose = materialize_module._file_writer

    def spy(*args: Any) -> FileWriter:
        writer = choose(*args)
        picked.append(type(writer))
        return writer

    monkeypatch.setattr(materialize_module, "_file_writer", spy)
    store: BlockStore = AsyncOnlyDirStore(blocks) if remote else DirStore(blocks)
    cache = BlockCache(dest.with_name(dest.name + "-cache")) if cached else None
    report = asyncio.run(materialize(flist, dest, store=store, cache=cache, workers=workers, digests=digests))
    return report, picked


@pytest.mark.parametrize(("name", "workers", "remote", "cached", "strategy"), CASES,
                         ids=[case[0] for case in CASES])
def test_each_strategy_writes_the_same_tree(release: tuple[Path, Path, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, name: str, workers: int,
                                            remote: bool, cached: bool, strategy: type[Any]) -> None:
    src, _blocks, flist = release
    baseline, _ = _run(release, tmp_path / "baseline", 0, False, False, monkeypatch)
    digests: dict[str, WrittenFile] = {}
    report, picked = _run(release, tmp_path / "dest", workers, remote, cached, monkeypatch, digests)
    assert picked == [strategy]
    # each file's digest, taken by whoever wrote it as it wrote it, is the one a read of the tree gives
    files = {p for p in (tmp_path / "dest").rglob("*") if p.is_file() and not p.is_symlink()}
    # with the inode and mtime it was sealed with, which the renames into place keep
    assert digests == {"/" + p.relative_to(tmp_path / "dest").as_posix():
                       (digest_file(p), p.stat().st_ino, p.stat().st_mtime_ns) for p in files}
    assert snapshot(tmp_path / "dest") == snapshot(tmp_path / "baseline") == snapshot(src)
    assert (report.entries, report.files, report.dirs, report.links, report.bytes_written) == (
        baseline.entries, baseline.files, baseline.dirs, baseline.links, baseline.bytes_written)
    assert report.writer_processes == (workers if strategy is ProcessFileWriter else 0)
    if remote:  # fetched on the event loop: with a cache each distinct block once, whoever writes
        with open_flist(flist) as reader:
            distinct = {ref.id for entry in reader.entries() for ref in entry.blocks}
        # without one, a block files share is fetched again by a file written after the first is done
        assert report.blocks_fetched == len(distinct) if cached else report.blocks_fetched >= len(distinct)
        assert report.bytes_downloaded > 0
    assert writer_children() == []
