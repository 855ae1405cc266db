"""The v2 .fl format: the exact rfs schema, round trips, streaming with bounded memory."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zos_upgrade.flist import (
    BLOCK_SIZE,
    BlockRef,
    Entry,
    EntryKind,
    FlistError,
    Route,
    open_flist,
    write_flist,
)
from zos_upgrade.flist.blocks import encrypt_block_v2
from zos_upgrade.flist.v2 import SCHEMA
from zos_upgrade.fsutil import TEMP_MARK

DIR, FILE, LINK = stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK


def _ref(n: int) -> BlockRef:
    return encrypt_block_v2(n.to_bytes(4, "big"))[0]


def sample_entries() -> list[Entry]:
    return [
        Entry("/", EntryKind.DIR, DIR | 0o755, mtime=5),
        Entry("/bin", EntryKind.DIR, DIR | 0o700, uid=1000, gid=100, mtime=7, ctime=8),
        Entry("/bin/big", EntryKind.FILE, FILE | 0o755, size=2 * BLOCK_SIZE + 1,
              blocks=(_ref(3), _ref(1), _ref(2))),
        Entry("/bin/empty", EntryKind.FILE, FILE | 0o644),
        Entry("/bin/link", EntryKind.LINK, LINK | 0o777, target="../etc/x y"),
        Entry("/dev", EntryKind.DIR, DIR | 0o755),
        Entry("/dev/null", EntryKind.SPECIAL, stat.S_IFCHR | 0o666, rdev=os.makedev(1, 3)),
        Entry("/dev/fifo", EntryKind.SPECIAL, stat.S_IFIFO | 0o600),
        Entry("/élan ü", EntryKind.FILE, FILE | 0o4755, size=10, blocks=(_ref(9),), mtime=2**33),
    ]


def _preorder(entries: list[Entry]) -> list[Entry]:
    """Readers list a directory's children sorted by name, depth first."""
    children: dict[str, list[Entry]] = {}
    for e in entries[1:]:
        children.setdefault(e.parent, []).append(e)
    out = [entries[0]]

    def walk(path: str) -> None:
        for child in sorted(children.get(path, []), key=lambda e: e.name):
            out.append(child)
            walk(child.path)

    walk("/")
    return out


def test_schema_matches_spec_column_by_column(tmp_path: Path) -> None:
    path = tmp_path / "a.fl"
    write_flist(path, sample_entries())
    db = sqlite3.connect(path)
    columns = {
        table: [(name, ctype, notnull, default, pk)
                for _cid, name, ctype, notnull, default, pk in db.execute(f"PRAGMA table_info({table})")]
        for table in ("inode", "extra", "block", "tag", "route")
    }
    assert columns == {
        "inode": [("ino", "INTEGER", 0, None, 1), ("parent", "INTEGER", 0, None, 0),
                  ("name", "VARCHAR(255)", 0, None, 0), ("size", "INTEGER", 0, None, 0),
                  ("uid", "INTEGER", 0, None, 0), ("gid", "INTEGER", 0, None, 0),
                  ("mode", "INTEGER", 0, None, 0), ("rdev", "INTEGER", 0, None, 0),
                  ("ctime", "INTEGER", 0, None, 0), ("mtime", "INTEGER", 0, None, 0)],
        "extra": [("ino", "INTEGER", 0, None, 1), ("data", "VARCHAR(4096)", 0, None, 0)],
        "block": [("ino", "INTEGER", 0, None, 0), ("id", "VARCHAR(32)", 0, None, 0),
                  ("key", "VARCHAR(32)", 0, None, 0)],
        "tag": [("key", "VARCHAR(10)", 0, None, 1), ("value", "VARCHAR(255)", 0, None, 0)],
        "route": [("start", "INTEGER", 0, None, 0), ("end", "INTEGER", 0, None, 0),
                  ("url", "VARCHAR(2048)", 0, None, 0)],
    }
    indexes = {
        table: sorted(
            (name, [col[2] for col in db.execute(f"PRAGMA index_info({name})")])
            for _seq, name, _unique, origin, _partial in db.execute(f"PRAGMA index_list({table})")
            if origin == "c"
        )
        for table in ("inode", "extra", "block", "tag", "route")
    }
    assert indexes == {"inode": [("names", ["name"]), ("parents", ["parent"])], "extra": [],
                       "block": [("block_ino", ["ino"])], "tag": [], "route": []}
    autoincrement = db.execute("SELECT sql FROM sqlite_master WHERE name = 'inode'").fetchone()[0]
    assert "AUTOINCREMENT" in autoincrement
    assert db.execute("SELECT ino, parent, name FROM inode WHERE ino = 1").fetchone() == (1, 0, "/")
    # ids and keys are raw 32-byte blobs
    blob = db.execute("SELECT typeof(id), length(id), typeof(key), length(key) FROM block LIMIT 1").fetchone()
    assert blob == ("blob", 32, "blob", 32)
    db.close()


def test_round_trip_entries_tags_routes(tmp_path: Path) -> None:
    path = tmp_path / "a.fl"
    entries = sample_entries()
    routes = [Route(0, 0x7F, "zdb://a:9900/ns"), Route(0x80, 0xFF, "http://h/blocks")]
    write_flist(path, entries, tags={"version": "1.2.3", "author": "me"}, routes=routes)
    with open_flist(path) as reader:
        assert reader.format == "v2"
        assert list(reader.entries()) == _preorder(entries)
        assert reader.tags() == {"author": "me", "version": "1.2.3"}
        assert reader.routes() == routes


def test_blocks_keep_insertion_order(tmp_path: Path) -> None:
    path = tmp_path / "a.fl"
    write_flist(path, sample_entries())
    with open_flist(path) as reader:
        big = next(e for e in reader.entries() if e.path == "/bin/big")
    assert big.blocks == (_ref(3), _ref(1), _ref(2))


def test_missing_root_entry_is_synthesized(tmp_path: Path) -> None:
    path = tmp_path / "a.fl"
    write_flist(path, [Entry("/f", EntryKind.FILE, FILE | 0o600, size=1, blocks=(_ref(1),))])
    with open_flist(path) as reader:
        entries = list(reader.entries())
    assert [e.path for e in entries] == ["/", "/f"] and entries[0].kind is EntryKind.DIR


def test_format_is_sniffed_not_named(tmp_path: Path) -> None:
    path = tmp_path / "a.fl"
    write_flist(path, sample_entries())
    renamed = tmp_path / "misnamed.flist"
    path.rename(renamed)
    with open_flist(renamed) as reader:
        assert reader.format == "v2"
    junk = tmp_path / "junk.fl"
    junk.write_bytes(b"not an flist at all")
    with pytest.raises(FlistError, match=r"gzip .* or SQLite"):
        open_flist(junk)
    with pytest.raises(FlistError, match="cannot open"):
        open_flist(tmp_path / "absent.fl")


def test_writer_refuses_unknown_suffix_wrong_blocks_and_orphans(tmp_path: Path) -> None:
    with pytest.raises(FlistError, match=r"\.fl \(v2\) or \.flist \(v1\)"):
        write_flist(tmp_path / "x.tar", sample_entries())
    v1_block = BlockRef(b"\x01" * 16, b"\x02" * 16)
    with pytest.raises(FlistError, match="32-byte"):
        write_flist(tmp_path / "x.fl",
                    [Entry("/f", EntryKind.FILE, FILE | 0o644, size=1, blocks=(v1_block,))])
    with pytest.raises(FlistError, match="before its directory"):
        write_flist(tmp_path / "x.fl", [Entry("/a/b", EntryKind.FILE, FILE | 0o644)])
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "a.fl"
    write_flist(path, sample_entries())
    before = path.read_bytes()
    bad = [*sample_entries(), Entry("/bin/big", EntryKind.FILE, FILE | 0o644)]
    with pytest.raises(FlistError, match="twice"):
        write_flist(path, bad)
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if TEMP_MARK in p.name]


def test_writes_are_deterministic(tmp_path: Path) -> None:
    write_flist(tmp_path / "a.fl", sample_entries(), tags={"v": "1"})
    write_flist(tmp_path / "b.fl", sample_entries(), tags={"v": "1"})
    assert (tmp_path / "a.fl").read_bytes() == (tmp_path / "b.fl").read_bytes()


def build_flat_fl(path: Path, files: int, per_dir: int = 1000) -> None:
    """An rfs-schema flist of ``files`` one-block files in directories of ``per_dir``, via sqlite directly."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("INSERT INTO inode VALUES (1, 0, '/', 0, 0, 0, ?, 0, 0, 0)", (DIR | 0o755,))
    block_id, key = b"\x07" * 32, b"\x08" * 32
    dirs = -(-files // per_dir)
    db.executemany("INSERT INTO inode VALUES (?, 1, ?, 0, 0, 0, ?, 0, 0, 0)",
                   ((2 + d, f"d{d:05d}", DIR | 0o755) for d in range(dirs)))
    first = 2 + dirs
    db.executemany("INSERT INTO inode VALUES (?, ?, ?, 100, 0, 0, ?, 0, 0, 0)",
                   ((first + i, 2 + i // per_dir, f"f{i:07d}", FILE | 0o644) for i in range(files)))
    db.executemany("INSERT INTO block VALUES (?, ?, ?)", ((first + i, block_id, key) for i in range(files)))
    db.commit()
    db.close()


# Current RSS sampled while streaming (ru_maxrss would be useless: a child inherits its parent's peak).
STREAM = """
import os, sys
from zos_upgrade.flist import EntryKind, open_flist

def rss():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

with open_flist(sys.argv[1]) as reader:
    entries = reader.entries()
    first = next(entries)
    before = peak = rss()
    count = 1
    for entry in entries:
        count += 1
        assert entry.kind in (EntryKind.DIR, EntryKind.FILE)
        if count % 5000 == 0:
            peak = max(peak, rss())
    peak = max(peak, rss())
print(count, (peak - before) // 1024)
"""


def _stream_and_measure(path: Path) -> tuple[int, int]:
    """Stream every entry in a fresh interpreter; returns (entries, growth of peak RSS in bytes)."""
    out = subprocess.run([sys.executable, "-c", STREAM, str(path)], check=True, capture_output=True,
                         text=True, timeout=600)
    count, growth_kib = out.stdout.split()
    return int(count), int(growth_kib) * 1024


@pytest.fixture(scope="module")
def big_fl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.fl"
    build_flat_fl(path, 100_000)
    return path


def test_100k_entries_stream_in_bounded_memory(big_fl: Path) -> None:
    count, growth = _stream_and_measure(big_fl)
    assert count == 1 + 100 + 100_000
    # keeping 100k Entry objects (with a BlockRef each) would take over 30 MB
    assert growth < 12 * 1024 * 1024, growth


@pytest.mark.fault
def test_1m_entries_stream_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.fl"
    build_flat_fl(path, 1_000_000)
    count, growth = _stream_and_measure(path)
    assert count == 1 + 1000 + 1_000_000
    # a million kept entries would be several hundred MB; streaming stays flat
    assert growth < 12 * 1024 * 1024, growth


def test_keeping_entries_would_fail_the_memory_bound(big_fl: Path) -> None:
    """The bound above can fail: holding the entries of the same flist exceeds it."""
    path = big_fl
    keep = STREAM.replace("    for entry in entries:", "    kept = list(entries)\n    for entry in kept:")
    out = subprocess.run([sys.executable, "-c", keep, str(path)], check=True, capture_output=True,
                         text=True, timeout=600)
    assert int(out.stdout.split()[1]) * 1024 > 12 * 1024 * 1024


NAMES = st.text(
    alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=20
).filter(lambda n: n not in (".", ".."))


@st.composite
def entry_trees(draw: st.DrawFn, id_size: int) -> list[Entry]:
    """A random tree, parents first: directories, files (with fake refs), symlinks, fifos, devices."""
    entries = [Entry("/", EntryKind.DIR, DIR | draw(st.integers(0, 0o7777)))]
    dirs, used = ["/"], {"/"}
    for _ in range(draw(st.integers(0, 25))):
        parent, name = draw(st.sampled_from(dirs)), draw(NAMES)
        path = f"/{name}" if parent == "/" else f"{parent}/{name}"
        if path in used:
            continue
        used.add(path)
        common = {"uid": draw(st.integers(0, 2**31)), "gid": draw(st.integers(0, 2**31)),
                  "mtime": draw(st.integers(0, 2**32 - 1)), "ctime": draw(st.integers(0, 2**32 - 1))}
        perms = draw(st.integers(0, 0o7777))
        kind = draw(st.sampled_from(["dir", "file", "link", "fifo", "chr"]))
        if kind == "dir":
            dirs.append(path)
            entries.append(Entry(path, EntryKind.DIR, DIR | perms, **common))
        elif kind == "file":
            size = draw(st.integers(0, 3 * BLOCK_SIZE))
            refs = tuple(BlockRef(draw(st.binary(min_size=id_size, max_size=id_size)),
                                  draw(st.binary(min_size=id_size, max_size=id_size)))
                         for _ in range(-(-size // BLOCK_SIZE)))
            entries.append(Entry(path, EntryKind.FILE, FILE | perms, size=size, blocks=refs, **common))
        elif kind == "link":
            targets = st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))
            target = draw(st.text(alphabet=targets, min_size=1, max_size=40))
            entries.append(Entry(path, EntryKind.LINK, LINK | 0o777, target=target, **common))
        elif kind == "fifo":
            entries.append(Entry(path, EntryKind.SPECIAL, stat.S_IFIFO | perms, **common))
        else:
            rdev = os.makedev(draw(st.integers(0, 4095)), draw(st.integers(0, 2**20 - 1)))
            entries.append(Entry(path, EntryKind.SPECIAL, stat.S_IFCHR | perms, rdev=rdev, **common))
    return entries


@settings(max_examples=40)
@given(entry_trees(32))
def test_any_tree_round_trips(tmp_path_factory: pytest.TempPathFactory, entries: list[Entry]) -> None:
    path = tmp_path_factory.mktemp("rt") / "tree.fl"
    write_flist(path, entries)
    with open_flist(path) as reader:
        got = list(reader.entries())
    assert sorted(got, key=lambda e: e.path) == sorted(entries, key=lambda e: e.path)
    # parents always come before their children
    seen: set[str] = set()
    for entry in got:
        assert entry.path == "/" or entry.parent in seen
        seen.add(entry.path)
