"""materialize refuses hostile input and never writes outside its destination.

Most cases feed entries straight to materialize through a minimal reader, so materialize's own checks
are tested even where the real readers would already refuse the flist; the block cases use real
flist files and a real dir:// store, read both ways materialize reads stores: in the worker thread
(``dir://``) and fetched on the event loop first (what ``http://`` and ``zdb://`` stores take).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stores import AsyncOnlyDirStore
from zos_upgrade.flist.blocks import BlockCorrupt, encrypt_block
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.formats import write_flist
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, HostileFlist
from zos_upgrade.flist.reader import FlistReader
from zos_upgrade.flist.stores import BlockMissing, DirStore, LocalStore, Route

DIR = stat.S_IFDIR | 0o755
FILE = stat.S_IFREG | 0o644
LINK = stat.S_IFLNK | 0o777


class ListReader(FlistReader):
    """Entries exactly as given: no reader-side checks in the way."""

    format = "v2"

    def __init__(self, entries: list[Entry]) -> None:
        self.path = Path("in-memory.fl")
        self._entries = entries
        self.closed = False

    def entries(self) -> Iterator[Entry]:
        yield from self._entries

    def tags(self) -> dict[str, str]:
        return {}

    def routes(self) -> list[Route]:
        return []

    def close(self) -> None:
        self.closed = True


def listing(root: Path) -> list[tuple[str, int, int]]:
    """Every path under ``root`` with its mode and size: what 'unchanged' means for the parent of DEST."""
    out = []
    for here, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            st = os.lstat(os.path.join(here, name))
            out.append((os.path.relpath(os.path.join(here, name), root), st.st_mode, st.st_size))
    return sorted(out)


@pytest.fixture(params=["local", "remote"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> DirStore:
    if request.param == "local":
        return DirStore(tmp_path / "blocks")
    async_only = AsyncOnlyDirStore(tmp_path / "blocks", "remote://blocks")
    assert not isinstance(async_only, LocalStore)
    return async_only


def put(store: DirStore, plain: bytes) -> BlockRef:
    ref, stored = encrypt_block(plain, "v2")
    asyncio.run(store.put(ref.id, stored))
    return ref


def refuse(tmp_path: Path, store: DirStore, entries: list[Entry], error: type[Exception], match: str) -> None:
    """materialize must raise ``error`` and leave everything around DEST as it was, DEST removed."""
    work = tmp_path / "work"
    outside = tmp_path / "outside"
    work.mkdir(exist_ok=True)
    outside.mkdir(exist_ok=True)
    before_work, before_outside = listing(work), listing(outside)
    with pytest.raises(error, match=match):
        asyncio.run(materialize(ListReader(entries), work / "dest", store=store))
    assert listing(work) == before_work  # dest was created fresh, so it is gone again
    assert listing(outside) == before_outside


def test_a_file_through_an_earlier_symlink_is_refused(tmp_path: Path, store: DirStore) -> None:
    ref = put(store, b"root::0:0::/root:/bin/sh\n")
    outside = tmp_path / "outside"
    entries = [Entry("/", EntryKind.DIR, DIR),
               Entry("/a", EntryKind.LINK, LINK, target=str(outside)),
               Entry("/a/passwd", EntryKind.FILE, FILE, size=25, blocks=(ref,))]
    refuse(tmp_path, store, entries, HostileFlist, "through symlink '/a'")
    assert not (outside / "passwd").exists()


def test_a_directory_through_a_relative_symlink_is_refused(tmp_path: Path, store: DirStore) -> None:
    entries = [Entry("/", EntryKind.DIR, DIR),
               Entry("/up", EntryKind.LINK, LINK, target="../../outside"),
               Entry("/up/x", EntryKind.DIR, DIR)]
    refuse(tmp_path, store, entries, HostileFlist, "through symlink")


def test_the_descriptor_walk_never_follows_a_symlink(tmp_path: Path) -> None:
    # the second line of defence, below the bookkeeping: reaching a parent directory one component
    # at a time with O_NOFOLLOW refuses a symlink, whoever put it there
    from zos_upgrade.flist.filewrite import DIR_OPEN, DirFds

    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    os.symlink(outside, dest / "a")
    (dest / "file").write_text("")
    for learn in (False, True):  # the walk of a file-writer process also caches what it reached
        fds = DirFds(os.open(dest, DIR_OPEN), learn=learn)
        with pytest.raises(HostileFlist, match="'a' is not a real directory"), fds.parent(["a", "x"]):
            pass
        with pytest.raises(HostileFlist, match="'file' is not a real directory"), fds.parent(["file", "x"]):
            pass
        assert list(fds.fds) == ["/"]
        fds.close()


def test_a_link_and_a_directory_of_the_same_name_are_refused(tmp_path: Path, store: DirStore) -> None:
    entries = [Entry("/", EntryKind.DIR, DIR),
               Entry("/d", EntryKind.DIR, DIR),
               Entry("/d", EntryKind.LINK, LINK, target=str(tmp_path / "outside"))]
    refuse(tmp_path, store, entries, HostileFlist, "appears twice")


@pytest.mark.parametrize("path", ["/../escape", "/a/../../escape", "/a//b", "/a/./b", "/nul\0x", "relative"])
def test_paths_that_could_leave_dest_are_refused(tmp_path: Path, store: DirStore, path: str) -> None:
    entries = [Entry("/", EntryKind.DIR, DIR), Entry("/a", EntryKind.DIR, DIR),
               Entry(path, EntryKind.DIR, DIR)]
    refuse(tmp_path, store, entries, HostileFlist, "entry path")
    assert not (tmp_path / "escape").exists()


def test_duplicate_names_are_refused(tmp_path: Path, store: DirStore) -> None:
    ref = put(store, b"one")
    entries = [Entry("/", EntryKind.DIR, DIR),
               Entry("/f", EntryKind.FILE, FILE, size=3, blocks=(ref,)),
               Entry("/f", EntryKind.FILE, FILE, size=3, blocks=(ref,))]
    refuse(tmp_path, store, entries, HostileFlist, "appears twice")


def test_an_entry_whose_parent_was_not_listed_is_refused(tmp_path: Path, store: DirStore) -> None:
    entries = [Entry("/", EntryKind.DIR, DIR), Entry("/nowhere/x", EntryKind.DIR, DIR)]
    refuse(tmp_path, store, entries, HostileFlist, "not a directory listed before it")


def test_a_file_whose_blocks_hold_more_than_its_size_is_refused(tmp_path: Path, store: DirStore) -> None:
    ref = put(store, b"0123456789")
    entries = [Entry("/", EntryKind.DIR, DIR), Entry("/f", EntryKind.FILE, FILE, size=4, blocks=(ref,))]
    refuse(tmp_path, store, entries, HostileFlist, "more than the 4 bytes")


def test_a_file_whose_blocks_hold_less_than_its_size_is_refused(tmp_path: Path, store: DirStore) -> None:
    ref = put(store, b"0123456789")
    entries = [Entry("/", EntryKind.DIR, DIR), Entry("/f", EntryKind.FILE, FILE, size=11, blocks=(ref,))]
    refuse(tmp_path, store, entries, HostileFlist, "hold 10 bytes but the entry says 11")


def test_a_symlink_with_a_nul_target_is_refused(tmp_path: Path, store: DirStore) -> None:
    entries = [Entry("/", EntryKind.DIR, DIR), Entry("/l", EntryKind.LINK, LINK, target="a\0b")]
    refuse(tmp_path, store, entries, HostileFlist, "NUL")


# --- blocks: real flist files over a real dir:// store ----------------------------------------------


def one_file_flist(tmp_path: Path, store: DirStore, content: bytes) -> tuple[Path, BlockRef]:
    ref = put(store, content)
    entries = [Entry("/", EntryKind.DIR, DIR), Entry("/etc", EntryKind.DIR, DIR),
               Entry("/etc/motd", EntryKind.FILE, FILE, size=len(content), blocks=(ref,))]
    flist = tmp_path / "one.fl"
    write_flist(flist, entries)
    return flist, ref


def block_file(store: DirStore, ref: BlockRef) -> Path:
    return store.root / ref.id.hex()[:2] / ref.id.hex()


def materialize_fails(tmp_path: Path, flist: Path, store: DirStore, error: type[Exception], match: str,
                      cache: BlockCache | None = None) -> None:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    before = listing(work)
    with pytest.raises(error, match=match):
        asyncio.run(materialize(flist, work / "dest", store=store, cache=cache))
    assert listing(work) == before


def test_a_missing_block_fails_and_writes_nothing(tmp_path: Path, store: DirStore) -> None:
    flist, ref = one_file_flist(tmp_path, store, b"hello\n")
    block_file(store, ref).unlink()
    expected = f"/etc/motd: block 0 \\({ref.id.hex()}\\) is missing"
    materialize_fails(tmp_path, flist, store, BlockMissing, expected)


def test_a_corrupted_block_fails_and_is_not_cached(tmp_path: Path, store: DirStore) -> None:
    flist, ref = one_file_flist(tmp_path, store, b"hello\n" * 100)
    path = block_file(store, ref)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    cache = BlockCache(tmp_path / "cache")
    materialize_fails(tmp_path, flist, store, BlockCorrupt, "not to the block id", cache)
    assert cache.get(ref.id) is None


def test_a_truncated_block_fails(tmp_path: Path, store: DirStore) -> None:
    flist, ref = one_file_flist(tmp_path, store, os.urandom(5000))
    path = block_file(store, ref)
    path.write_bytes(path.read_bytes()[:-100])
    materialize_fails(tmp_path, flist, store, BlockCorrupt, ref.id.hex())


def test_a_block_whose_key_does_not_match_its_content_fails(tmp_path: Path, store: DirStore) -> None:
    good = put(store, b"the real content")
    other = put(store, b"something else!!")
    # authentic bytes under their own id, but the flist pairs them with another block's key
    lying = BlockRef(good.id, other.key)
    entries = [Entry("/", EntryKind.DIR, DIR), Entry("/f", EntryKind.FILE, FILE, size=16, blocks=(lying,))]
    write_flist(tmp_path / "lie.fl", entries)
    materialize_fails(tmp_path, tmp_path / "lie.fl", store, BlockCorrupt, "/f: block 0")


def test_a_failure_in_an_existing_empty_dest_leaves_it_empty(tmp_path: Path, store: DirStore) -> None:
    flist, ref = one_file_flist(tmp_path, store, b"hello\n")
    block_file(store, ref).unlink()
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BlockMissing):
        asyncio.run(materialize(flist, dest, store=store))
    assert dest.is_dir() and list(dest.iterdir()) == []


def test_a_hostile_flist_file_is_refused_by_the_reader_before_anything_is_written(tmp_path: Path) -> None:
    # the real path: a v2 file whose inode table says a/passwd lives under the symlink a
    import sqlite3

    flist = tmp_path / "evil.fl"
    write_flist(flist, [Entry("/", EntryKind.DIR, DIR), Entry("/a", EntryKind.LINK, LINK, target="/etc")])
    db = sqlite3.connect(flist)
    ino = db.execute("SELECT ino FROM inode WHERE name = 'a'").fetchone()[0]
    db.execute("INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) "
               "VALUES (?, 'passwd', 0, 0, 0, ?, 0, 0, 0)", (ino, FILE))
    db.commit()
    db.close()
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(HostileFlist) as caught:
        asyncio.run(materialize(flist, work / "dest", store=DirStore(tmp_path / "blocks")))
    assert "passwd" in str(caught.value)
    assert listing(work) == []
