"""materialize: what it writes, what it reports, and how the block cache saves downloads."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import shutil
import stat
from pathlib import Path

import pytest

from zos_upgrade.flist.blocks import BLOCK_SIZE, BlockCorrupt, encrypt_block
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.formats import open_flist, write_flist
from zos_upgrade.flist.materialize import MaterializeReport, materialize
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import BlockMissing, DirStore, Route

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "flist-v1"
FOO = random.Random(7).randbytes(1_280_000)  # 3 distinct blocks


def make_tree(root: Path, *, motd: bytes = b"welcome\n") -> None:
    (root / "etc" / "zinit").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc" / "motd").write_bytes(motd)
    (root / "etc" / "zinit" / "foo.yaml").write_bytes(b"exec: /bin/foo\n")
    (root / "bin" / "foo").write_bytes(FOO)
    (root / "bin" / "empty").write_bytes(b"")
    os.chmod(root / "bin" / "foo", 0o755)
    os.symlink("foo", root / "bin" / "foo-link")
    os.symlink("/etc/motd", root / "bin" / "motd-abs")
    os.chmod(root / "etc" / "zinit", 0o500)
    for path in [root / "bin" / "foo", root / "etc" / "motd", root / "etc" / "zinit", root / "bin", root]:
        os.utime(path, (1_600_000_000, 1_600_000_000))


def packed(tmp_path: Path, suffix: str = ".fl", name: str = "rel", **tree: bytes) -> tuple[Path, Path]:
    src, blocks = tmp_path / f"src-{name}", tmp_path / "blocks"
    src.mkdir()
    make_tree(src, **tree)
    out = tmp_path / f"{name}{suffix}"
    asyncio.run(pack(src, out, DirStore(blocks), routes=[Route(0, 255, f"dir://{blocks}")]))
    os.chmod(src / "etc" / "zinit", 0o700)
    return out, blocks


def stored_sizes(blocks: Path) -> int:
    return sum(p.stat().st_size for p in blocks.rglob("*") if p.is_file())


def test_materialize_writes_the_tree_and_reports_what_it_did(tmp_path: Path) -> None:
    flist, blocks = packed(tmp_path)
    dest = tmp_path / "dest"
    seen: list[int] = []
    report = asyncio.run(materialize(flist, dest, cache=BlockCache(tmp_path / "cache"), progress=seen.append))

    assert report == MaterializeReport(
        entries=10, files=4, dirs=3, links=2, bytes_written=8 + 15 + 1_280_000, blocks_fetched=5,
        blocks_from_cache=0, bytes_downloaded=stored_sizes(blocks), owners_skipped=0,
    )
    assert sum(seen) == report.bytes_written
    assert (dest / "bin" / "foo").read_bytes() == FOO
    assert (dest / "bin" / "empty").read_bytes() == b""
    assert os.readlink(dest / "bin" / "motd-abs") == "/etc/motd"
    assert os.readlink(dest / "bin" / "foo-link") == "foo"
    assert stat.S_IMODE((dest / "bin" / "foo").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "etc" / "zinit").stat().st_mode) == 0o500
    # directory mtimes are restored after their contents are written
    for path in [dest / "bin", dest / "etc" / "zinit", dest, dest / "bin" / "foo"]:
        assert int(path.stat().st_mtime) == 1_600_000_000
    # no temporary file is left next to what was written
    assert not [p for p in dest.rglob("*") if ".zu-tmp-" in p.name]
    os.chmod(dest / "etc" / "zinit", 0o700)


def test_a_second_materialize_is_served_from_the_cache(tmp_path: Path) -> None:
    flist, blocks = packed(tmp_path)
    cache = BlockCache(tmp_path / "cache")
    asyncio.run(materialize(flist, tmp_path / "one", cache=cache))
    shutil.rmtree(blocks)  # the store is gone: everything must come from the cache
    report = asyncio.run(materialize(flist, tmp_path / "two", cache=cache))
    assert (report.blocks_fetched, report.blocks_from_cache, report.bytes_downloaded) == (0, 5, 0)
    assert (tmp_path / "two" / "etc" / "motd").read_bytes() == b"welcome\n"


def test_a_release_sharing_blocks_fetches_only_the_new_ones(tmp_path: Path) -> None:
    first, _ = packed(tmp_path, name="r1")
    second, _ = packed(tmp_path, name="r2", motd=b"welcome to release two\n")
    cache = BlockCache(tmp_path / "cache")
    asyncio.run(materialize(first, tmp_path / "one", cache=cache))
    report = asyncio.run(materialize(second, tmp_path / "two", cache=cache))
    # only /etc/motd changed: one new block, the four others come from the cache
    assert (report.blocks_fetched, report.blocks_from_cache) == (1, 4)
    assert (tmp_path / "two" / "etc" / "motd").read_bytes() == b"welcome to release two\n"


def test_golden_v2_release_after_v1_fetches_exactly_its_three_new_blocks(tmp_path: Path) -> None:
    # made by the real zflist: v2 shares 9 blocks with v1 and adds 3 (tests/data/flist-v1/README.md)
    store = DirStore(GOLDEN / "blocks")
    cache = BlockCache(tmp_path / "cache")
    one = asyncio.run(materialize(GOLDEN / "v1.flist", tmp_path / "v1", store=store, cache=cache))
    two = asyncio.run(materialize(GOLDEN / "v2.flist", tmp_path / "v2", store=store, cache=cache))
    assert (one.blocks_fetched, one.blocks_from_cache) == (11, 0)
    assert (two.blocks_fetched, two.blocks_from_cache) == (3, 9)
    assert (tmp_path / "v1" / "usr" / "lib" / "x" / "block512k.bin").read_bytes() == bytes(
        (7 * i + 3) & 0xFF for i in range(BLOCK_SIZE)
    )
    assert os.readlink(tmp_path / "v2" / "usr" / "lib" / "hostname-rel") == "../../etc/hostname"
    assert (tmp_path / "v2" / "usr" / "lib" / "x" / "small.txt").exists() is False
    assert (tmp_path / "v2" / "etc" / "zinit" / "baz.yaml").stat().st_size == 21


def test_a_corrupt_cached_block_is_dropped_and_fetched_again(tmp_path: Path) -> None:
    flist, _ = packed(tmp_path)
    cache = BlockCache(tmp_path / "cache")
    asyncio.run(materialize(flist, tmp_path / "one", cache=cache))
    with open_flist(flist) as reader:
        motd = next(e for e in reader.entries() if e.path == "/etc/motd")
    cached = cache.path_for(motd.blocks[0].id)
    rotten = b"\0" + cached.read_bytes()[1:]
    cached.unlink()  # a new file: the cached one is a hard link to the store's (see the next test)
    cached.write_bytes(rotten)
    report = asyncio.run(materialize(flist, tmp_path / "two", cache=cache))
    assert (report.blocks_fetched, report.blocks_from_cache) == (1, 4)
    assert (tmp_path / "two" / "etc" / "motd").read_bytes() == b"welcome\n"
    assert cache.get(motd.blocks[0].id) is not None  # repaired


@pytest.mark.parametrize("workers", [0, 1])
def test_blocks_of_a_dir_store_are_linked_into_the_cache_not_copied(tmp_path: Path, workers: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    flist, blocks = packed(tmp_path)
    cache = BlockCache(tmp_path / "cache")
    asyncio.run(materialize(flist, tmp_path / "one", cache=cache, workers=workers))
    stored = {p.name: p for p in blocks.rglob("*") if p.is_file()}
    cached = {p.name: p for p in cache.root.rglob("*") if p.is_file()}
    assert cached.keys() == stored.keys()
    assert all(cached[name].stat().st_ino == stored[name].stat().st_ino for name in cached)
    # where the system refuses the link (another file system, protected hardlinks), a copy is written
    # (in this process: a file-writer child would not see the refusal staged here)
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    copies = BlockCache(tmp_path / "copies")
    report = asyncio.run(materialize(flist, tmp_path / "two", cache=copies, workers=0))
    assert report.blocks_fetched == len(stored)
    for path in copies.root.rglob("*"):
        if path.is_file():
            assert path.stat().st_ino != stored[path.name].stat().st_ino
            assert path.read_bytes() == stored[path.name].read_bytes()


def test_an_identical_block_used_twice_is_fetched_once(tmp_path: Path) -> None:
    ref, stored = encrypt_block(b"same content", "v2")
    store = DirStore(tmp_path / "blocks")
    asyncio.run(store.put(ref.id, stored))
    entries = [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755)] + [
        Entry(f"/f{i}", EntryKind.FILE, stat.S_IFREG | 0o644, size=12, blocks=(ref,)) for i in range(8)
    ]
    write_flist(tmp_path / "dup.fl", entries)
    report = asyncio.run(materialize(tmp_path / "dup.fl", tmp_path / "dest", store=store,
                                     cache=BlockCache(tmp_path / "cache")))
    assert report.files == 8
    assert (report.blocks_fetched, report.bytes_downloaded) == (1, len(stored))
    assert all((tmp_path / "dest" / f"f{i}").read_bytes() == b"same content" for i in range(8))


@pytest.mark.parametrize("concurrency", [1, 3])
def test_low_concurrency_still_writes_every_block_in_order(tmp_path: Path, concurrency: int) -> None:
    flist, _ = packed(tmp_path)
    asyncio.run(materialize(flist, tmp_path / "dest", concurrency=concurrency))
    assert (tmp_path / "dest" / "bin" / "foo").read_bytes() == FOO


def test_an_existing_empty_destination_is_used(tmp_path: Path) -> None:
    flist, _ = packed(tmp_path)
    (tmp_path / "dest").mkdir()
    asyncio.run(materialize(flist, tmp_path / "dest"))
    assert (tmp_path / "dest" / "etc" / "motd").read_bytes() == b"welcome\n"


def test_a_non_empty_destination_is_refused_and_left_alone(tmp_path: Path) -> None:
    flist, _ = packed(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(FlistError, match="not empty"):
        asyncio.run(materialize(flist, dest))
    assert [p.name for p in dest.iterdir()] == ["keep"]


def test_a_destination_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    flist, _ = packed(tmp_path)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "dest")
    with pytest.raises(FlistError, match="not a directory"):
        asyncio.run(materialize(flist, tmp_path / "dest"))
    assert list((tmp_path / "real").iterdir()) == []


def test_without_routes_or_store_it_says_a_store_is_needed(tmp_path: Path) -> None:
    write_flist(tmp_path / "bare.fl", [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755)])
    with pytest.raises(FlistError, match="no block store"):
        asyncio.run(materialize(tmp_path / "bare.fl", tmp_path / "dest"))
    assert not (tmp_path / "dest").exists()


def test_special_files_fifos_are_made_devices_skipped_unless_allowed(tmp_path: Path) -> None:
    entries = [
        Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755),
        Entry("/pipe", EntryKind.SPECIAL, stat.S_IFIFO | 0o640, mtime=1234),
        Entry("/null", EntryKind.SPECIAL, stat.S_IFCHR | 0o666, rdev=os.makedev(1, 3)),
        Entry("/sock", EntryKind.SPECIAL, stat.S_IFSOCK | 0o777),
    ]
    write_flist(tmp_path / "special.fl", entries)
    store = DirStore(tmp_path / "blocks")
    report = asyncio.run(materialize(tmp_path / "special.fl", tmp_path / "dest", store=store))
    assert (report.specials, report.specials_skipped) == (1, 2)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "dest" / "pipe").st_mode)
    assert stat.S_IMODE(os.lstat(tmp_path / "dest" / "pipe").st_mode) == 0o640
    assert not (tmp_path / "dest" / "null").exists()
    assert not (tmp_path / "dest" / "sock").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node needs root")
def test_devices_are_created_when_allowed(tmp_path: Path) -> None:
    entries = [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755),
               Entry("/null", EntryKind.SPECIAL, stat.S_IFCHR | 0o666, rdev=os.makedev(1, 3))]
    write_flist(tmp_path / "dev.fl", entries)
    report = asyncio.run(materialize(tmp_path / "dev.fl", tmp_path / "dest", store=DirStore(tmp_path / "b"),
                                     allow_devices=True))
    assert report.specials == 1
    st = os.lstat(tmp_path / "dest" / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


def test_owners_are_applied_as_root_and_counted_as_skipped_otherwise(tmp_path: Path) -> None:
    ref, stored = encrypt_block(b"owned", "v2")
    store = DirStore(tmp_path / "blocks")
    asyncio.run(store.put(ref.id, stored))
    entries = [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755),
               Entry("/f", EntryKind.FILE, stat.S_IFREG | 0o644, size=5, uid=4321, gid=4321, blocks=(ref,)),
               Entry("/l", EntryKind.LINK, stat.S_IFLNK | 0o777, size=1, uid=4321, gid=4321, target="f")]
    write_flist(tmp_path / "own.fl", entries)
    report = asyncio.run(materialize(tmp_path / "own.fl", tmp_path / "dest", store=store))
    if os.geteuid() == 0:
        assert report.owners_skipped == 0
        assert os.lstat(tmp_path / "dest" / "f").st_uid == 4321
        assert os.lstat(tmp_path / "dest" / "l").st_gid == 4321
    else:
        assert report.owners_skipped == 2
        assert os.lstat(tmp_path / "dest" / "f").st_uid == os.geteuid()


def test_a_missing_block_names_the_file(tmp_path: Path) -> None:
    ref = BlockRef(b"\x01" * 32, b"\x02" * 32)
    entries = [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755),
               Entry("/etc", EntryKind.DIR, stat.S_IFDIR | 0o755),
               Entry("/etc/motd", EntryKind.FILE, stat.S_IFREG | 0o644, size=10, blocks=(ref,))]
    write_flist(tmp_path / "m.fl", entries)
    with pytest.raises(BlockMissing, match=r"/etc/motd: block 0 \(0101"):
        asyncio.run(materialize(tmp_path / "m.fl", tmp_path / "dest", store=DirStore(tmp_path / "blocks")))
    assert not (tmp_path / "dest").exists()


def test_the_block_cache_refuses_and_drops_bytes_that_are_not_the_block(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "cache")
    ref, stored = encrypt_block(b"cached", "v1")
    with pytest.raises(BlockCorrupt, match="refusing to cache"):
        cache.put(ref.id, stored + b"x")
    assert cache.get(ref.id) is None
    cache.put(ref.id, stored)
    assert cache.path_for(ref.id) == tmp_path / "cache" / ref.id.hex()[:2] / ref.id.hex()
    assert cache.get(ref.id) == stored
    cache.path_for(ref.id).write_bytes(stored[:-1])
    assert cache.get(ref.id) is None  # corrupt: dropped, so the next reader fetches it again
    assert not cache.path_for(ref.id).exists()
    with pytest.raises(FlistError, match="16 \\(v1\\) or 32 \\(v2\\) bytes"):
        cache.path_for(b"../../etc")


@pytest.mark.parametrize("files", [3, 40])
def test_a_small_tree_is_made_durable_by_fsyncs_a_big_one_by_one_syncfs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int) -> None:
    # a syncfs waits for every dirty page of the file system: for a few files each is fsynced
    from zos_upgrade.flist import durability

    src, blocks = tmp_path / "src", tmp_path / "blocks"
    for index in range(files):
        (src / f"d{index % 2}").mkdir(parents=True, exist_ok=True)
        (src / f"d{index % 2}" / f"f{index}").write_bytes(b"%d" % index)
    flist = tmp_path / "rel.fl"
    asyncio.run(pack(src, flist, DirStore(blocks)))
    synced: list[str] = []
    syncfs_calls: list[int] = []
    real_fsync, real_syncfs = os.fsync, durability._SYNCFS
    assert real_syncfs is not None  # Linux

    def fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("dir" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(durability, "_SYNCFS", lambda fd: (syncfs_calls.append(fd), real_syncfs(fd))[1])
    asyncio.run(materialize(flist, tmp_path / "dest", store=DirStore(blocks), workers=0))
    if files <= durability.FSYNC_EACH_UP_TO:  # every file, then the two directories and the top
        assert syncfs_calls == [] and synced.count("file") == files and synced.count("dir") == 3
    else:
        assert len(syncfs_calls) == 2 and synced == []  # the batch, then the whole tree
