"""verify: every block present and authentic, and every bad one reported with the files that use it."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path

import pytest

from zos_upgrade.flist.blocks import encrypt_block
from zos_upgrade.flist.formats import write_flist
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError
from zos_upgrade.flist.stores import DirStore, Route, Router
from zos_upgrade.flist.verify import verify

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "flist-v1"


def block_path(store: DirStore, ref: BlockRef) -> Path:
    return store.root / ref.id.hex()[:2] / ref.id.hex()


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, DirStore, dict[str, BlockRef]]:
    """Five distinct blocks: 'shared' is used by two files, 'big' has two blocks."""
    store = DirStore(tmp_path / "blocks")
    refs: dict[str, BlockRef] = {}
    contents = {"a": b"alpha" * 100, "b": b"beta" * 100, "shared": b"shared" * 100,
                "big0": os.urandom(512 * 1024), "big1": os.urandom(1000)}
    for name, plain in contents.items():
        ref, stored = encrypt_block(plain, "v2")
        asyncio.run(store.put(ref.id, stored))
        refs[name] = ref

    def file(path: str, *names: str) -> Entry:
        size = sum(len(contents[n]) for n in names)
        blocks = tuple(refs[n] for n in names)
        return Entry(path, EntryKind.FILE, stat.S_IFREG | 0o644, size=size, blocks=blocks)

    directory = stat.S_IFDIR | 0o755
    entries = [Entry("/", EntryKind.DIR, directory), Entry("/d", EntryKind.DIR, directory),
               file("/d/a", "a"), file("/d/b", "b"), file("/d/s1", "shared"), file("/s2", "shared"),
               file("/big", "big0", "big1"), file("/empty")]
    flist = tmp_path / "rel.fl"
    write_flist(flist, entries, routes=[Route(0, 255, f"dir://{store.root}")])
    return flist, store, refs


def test_a_complete_store_verifies(release: tuple[Path, DirStore, dict[str, BlockRef]]) -> None:
    flist, store, _ = release
    report = asyncio.run(verify(flist, store))
    assert report.ok
    assert (report.files, report.blocks) == (6, 5)
    assert report.bytes_checked == 500 + 400 + 600 + 512 * 1024 + 1000


def test_the_stores_recorded_in_the_flist_are_used_by_default(
    release: tuple[Path, DirStore, dict[str, BlockRef]]
) -> None:
    flist, _, _ = release
    assert asyncio.run(verify(flist)).ok


def test_every_missing_and_corrupt_block_is_reported_with_its_files(
    release: tuple[Path, DirStore, dict[str, BlockRef]]
) -> None:
    flist, store, refs = release
    block_path(store, refs["a"]).unlink()
    block_path(store, refs["shared"]).unlink()
    corrupt = block_path(store, refs["b"])
    corrupt.write_bytes(corrupt.read_bytes()[:-1] + b"\0")
    truncated = block_path(store, refs["big1"])
    truncated.write_bytes(truncated.read_bytes()[:50])

    report = asyncio.run(verify(flist, store))
    assert not report.ok
    missing = {p.block_id: p.paths for p in report.missing}
    assert missing == {refs["a"].id.hex(): ("/d/a",), refs["shared"].id.hex(): ("/d/s1", "/s2")}
    bad = {p.block_id: p.paths for p in report.corrupt}
    assert bad == {refs["b"].id.hex(): ("/d/b",), refs["big1"].id.hex(): ("/big",)}
    assert all("hash" in p.reason for p in report.corrupt)
    assert report.bytes_checked == 512 * 1024  # only big0 is still good


def test_authentic_bytes_under_the_wrong_key_are_corrupt(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "blocks")
    good, stored = encrypt_block(b"real", "v2")
    other, _ = encrypt_block(b"fake", "v2")
    asyncio.run(store.put(good.id, stored))
    write_flist(tmp_path / "lie.fl", [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755),
                                      Entry("/f", EntryKind.FILE, stat.S_IFREG | 0o644, size=4,
                                            blocks=(BlockRef(good.id, other.key),))])
    report = asyncio.run(verify(tmp_path / "lie.fl", store))
    assert [p.paths for p in report.corrupt] == [("/f",)]
    assert "authentication failed" in report.corrupt[0].reason


def test_the_golden_v1_flists_verify_against_their_blocks(tmp_path: Path) -> None:
    store = DirStore(GOLDEN / "blocks")
    for name, blocks in [("v1.flist", 11), ("v2.flist", 12)]:
        report = asyncio.run(verify(GOLDEN / name, store))
        assert report.ok and report.blocks == blocks, name


def test_golden_v2_with_v1_only_blocks_removed_reports_its_three_own_blocks(tmp_path: Path) -> None:
    # a store holding only v1's blocks: the three blocks v2 adds are missing, each with its file
    shutil.copytree(GOLDEN / "blocks", tmp_path / "blocks")
    from zos_upgrade.flist.formats import open_flist

    with open_flist(GOLDEN / "v1.flist") as one:
        v1_ids = {b.id.hex() for e in one.entries() for b in e.blocks}
    for path in (tmp_path / "blocks").rglob("*"):
        if path.is_file() and path.name not in v1_ids:
            path.unlink()
    report = asyncio.run(verify(GOLDEN / "v2.flist", DirStore(tmp_path / "blocks")))
    assert len(report.missing) == 3
    assert sorted(p for m in report.missing for p in m.paths) == [
        "/etc/motd", "/etc/zinit/baz.yaml", "/usr/lib/x/added.txt"
    ]


def test_a_route_that_covers_no_id_reports_them_missing(
    release: tuple[Path, DirStore, dict[str, BlockRef]]
) -> None:
    flist, store, refs = release
    report = asyncio.run(verify(flist, Router([Route(0, 0x7F, f"dir://{store.root}")])))
    expected = sorted(r.id.hex() for r in refs.values() if r.id[0] > 0x7F)
    assert [p.block_id for p in report.missing] == expected
    assert all("no route covers" in p.reason or "missing" in p.reason for p in report.missing)


def test_an_flist_without_routes_needs_a_store(tmp_path: Path) -> None:
    write_flist(tmp_path / "bare.fl", [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755)])
    with pytest.raises(FlistError, match="no block store"):
        asyncio.run(verify(tmp_path / "bare.fl"))
