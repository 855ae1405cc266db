"""Hostile flists: every lie a reader must refuse, with an error that names the entry."""

from __future__ import annotations

import asyncio
import gzip
import io
import shutil
import sqlite3
import stat
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from zos_upgrade.flist import (
    BLOCK_SIZE,
    BlockCorrupt,
    BlockRef,
    Entry,
    EntryKind,
    FlistError,
    HostileFlist,
    Limits,
    Router,
    open_flist,
    write_flist,
)
from zos_upgrade.flist.blocks import decrypt_block, encrypt_block_v1, encrypt_block_v2
from zos_upgrade.flist.v1 import dir_key, load_schema

DIR, FILE, LINK = stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK


def _read_all(path: Path, limits: Limits | None = None) -> list[Entry]:
    limits = limits or Limits()
    with open_flist(path, limits) as reader:
        return list(reader.entries())


# --- v2: a valid .fl, then tampered with sqlite ----------------------------------------------------


def _v2(tmp_path: Path, *tamper: str, params: Sequence[Any] = ()) -> Path:
    ref = encrypt_block_v2(b"content")[0]
    path = tmp_path / "hostile.fl"
    write_flist(path, [
        Entry("/", EntryKind.DIR, DIR | 0o755),
        Entry("/etc", EntryKind.DIR, DIR | 0o755),
        Entry("/etc/passwd", EntryKind.FILE, FILE | 0o644, size=7, blocks=(ref,)),
        Entry("/etc/link", EntryKind.LINK, LINK | 0o777, target="passwd"),
        Entry("/a", EntryKind.DIR, DIR | 0o755),
        Entry("/a/b", EntryKind.DIR, DIR | 0o755),
    ])
    db = sqlite3.connect(path)
    for sql in tamper:
        db.execute(sql, params if "?" in sql else ())
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("UPDATE inode SET name = 'x/y' WHERE name = 'passwd'", (), r"name 'x/y' is not allowed"),
        ("UPDATE inode SET name = '..' WHERE name = 'passwd'", (), r"name '\.\.' is not allowed"),
        ("UPDATE inode SET name = '.' WHERE name = 'passwd'", (), r"name '\.' is not allowed"),
        ("UPDATE inode SET name = '' WHERE name = 'passwd'", (), r"name '' is not allowed"),
        ("UPDATE inode SET name = ? WHERE name = 'passwd'", ("pass\0wd",), r"name 'pass\\x00wd'"),
        ("UPDATE inode SET name = 'passwd' WHERE name = 'link'", (), r"'/etc/passwd': duplicate name"),
        ("UPDATE inode SET size = 9999999 WHERE name = 'passwd'", (),
         r"'/etc/passwd': size 9999999 needs 20"),
        ("UPDATE inode SET size = 0 WHERE name = 'passwd'", (), r"'/etc/passwd': size 0 needs 0 blocks"),
        ("INSERT INTO block SELECT ino, id, key FROM block", (), r"size 7 needs 1 blocks .* lists 2"),
        ("INSERT INTO block SELECT (SELECT ino FROM inode WHERE name = 'link'), id, key FROM block", (),
         r"'/etc/link': a non-file entry carries content blocks"),
        ("UPDATE block SET id = x'0102'", (), r"'/etc/passwd': block id/key must be 32-byte"),
        ("DELETE FROM extra", (), r"'/etc/link': symlink without a valid target"),
        ("UPDATE inode SET mode = ? WHERE name = 'b'", (0o777,),
         r"'/a/b': special entry with mode 0o777 is no socket"),
        ("UPDATE inode SET mode = 'rwx' WHERE name = 'b'", (), r"'/a/b': non-integer"),
        ("UPDATE inode SET uid = -5 WHERE name = 'passwd'", (), r"'/etc/passwd': owner -5:0 is outside"),
        ("UPDATE inode SET gid = ? WHERE name = 'passwd'", (2**40,),
         r"'/etc/passwd': owner 0:\d+ is outside"),
        ("UPDATE inode SET mtime = ? WHERE name = 'passwd'", (2**63 - 1,),
         r"'/etc/passwd': time .* out of range"),
        ("UPDATE inode SET rdev = -1 WHERE name = 'b'", (), r"'/a/b': device -1 or mode .* out of range"),
        # found by the fault suite's byte-flipping fuzz: a mode no stat.S_IS* accepts
        ("UPDATE inode SET mode = -32531 WHERE name = 'passwd'", (),
         r"'/etc/passwd': device 0 or mode -0o77423 is out of range"),
        ("UPDATE inode SET mode = ? WHERE name = 'passwd'", (2**40 | 0o100644,),
         r"'/etc/passwd': device 0 or mode 0o\d+ is out of range"),
        ("UPDATE inode SET name = 'root' WHERE ino = 1", (), r"no root inode"),
        ("DELETE FROM inode WHERE ino = 1", (), r"no root inode"),
    ],
)
def test_v2_hostile_entries(tmp_path: Path, sql: str, params: Sequence[Any], message: str) -> None:
    with pytest.raises(HostileFlist, match=message):
        _read_all(_v2(tmp_path, sql, params=params))


def test_v2_directory_cycle(tmp_path: Path) -> None:
    path = _v2(tmp_path,
               "UPDATE inode SET parent = (SELECT ino FROM inode WHERE name = 'b') WHERE name = 'a'")
    with pytest.raises(HostileFlist, match=r"directory cycle"):
        _read_all(path)


def test_v2_orphan_entry(tmp_path: Path) -> None:
    path = _v2(tmp_path, "UPDATE inode SET parent = 999 WHERE name = 'passwd'")
    with pytest.raises(HostileFlist, match=r"'passwd' .* missing parent inode 999"):
        _read_all(path)


def test_v2_file_through_a_symlink(tmp_path: Path) -> None:
    """`a -> /etc`, then `a/passwd`: a child hanging off a symlink is refused, never followed."""
    path = _v2(
        tmp_path,
        "UPDATE extra SET data = '/etc'",
        "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) "
        f"SELECT ino, 'shadow', 0, 0, 0, {FILE | 0o644}, 0, 0, 0 FROM inode WHERE name = 'link'",
    )
    with pytest.raises(HostileFlist, match=r"'/etc/link/shadow': its parent is not a directory"):
        _read_all(path)


def test_v2_entries_are_checked_before_they_are_yielded(tmp_path: Path) -> None:
    path = _v2(tmp_path, "UPDATE inode SET name = '..' WHERE name = 'b'")
    seen: list[str] = []
    with open_flist(path) as reader, pytest.raises(HostileFlist):
        for entry in reader.entries():
            seen.append(entry.path)
    assert "/a/.." not in seen and "/a" in seen


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (Limits(max_entries=3), r"6 entries, more than the 3 allowed"),
        (Limits(max_file_bytes=6), r"'/etc/passwd': size 7 exceeds the 6-byte file limit"),
        (Limits(max_total_bytes=6), r"'/etc/passwd': files add up to more than 6 bytes"),
        (Limits(max_depth=1), r"'/a/b': deeper than 1 levels"),
        (Limits(max_name_bytes=3), r"'/etc/\w+': name longer than 3 bytes"),
        (Limits(max_path_bytes=6), r"'/etc/\w+': path longer than 6 bytes"),
    ],
)
def test_v2_limits(tmp_path: Path, limits: Limits, message: str) -> None:
    with pytest.raises(HostileFlist, match=message):
        _read_all(_v2(tmp_path), limits)


def test_v2_corrupted_database(tmp_path: Path) -> None:
    path = _v2(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[100:] = bytes((b ^ 0x5A) for b in raw[100:])
    path.write_bytes(bytes(raw))
    with pytest.raises(FlistError, match=r"hostile\.fl: .*(corrupt|not a v2 flist)"):
        _read_all(path)


def test_v2_truncated_database(tmp_path: Path) -> None:
    path = _v2(tmp_path)
    path.write_bytes(path.read_bytes()[: 4096 + 100])
    with pytest.raises(FlistError, match=r"hostile\.fl"):
        _read_all(path)


def test_v2_database_of_another_program(tmp_path: Path) -> None:
    path = tmp_path / "other.fl"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE inode (ino INTEGER, name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(FlistError, match=r"table 'inode' lacks columns"):
        open_flist(path)


# --- v1: records built by hand with the capnp schema -----------------------------------------------


Content = list[tuple[str, str, Any, int]]  # (name, kind, dir key | blocks | link target, size)


def dir_record(contents: Content, name: str = "") -> bytes:
    message = load_schema().Dir.new_message(name=name, location=name, parent="", size=4096, aclkey="")
    slots = message.init("contents", len(contents))
    for slot, (child, kind, value, size) in zip(slots, contents, strict=True):
        slot.name, slot.size = child, size
        if kind == "dir":
            slot.attributes.init("dir").key = value
        elif kind == "file":
            blocks = slot.attributes.init("file").init("blocks", len(value))
            for block, ref in zip(blocks, value, strict=True):
                block.hash, block.key = ref.id, ref.key
        else:
            slot.attributes.init("link").target = value
    return bytes(message.to_bytes())


def _tar_gz(members: Sequence[tuple[str, bytes | None, bytes]]) -> bytes:
    """(name, content or None for a directory, tar type) -> tar.gz bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, content, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
                archive.addfile(info)
            elif content is None:
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _database(records: dict[str, bytes], tmp_path: Path) -> bytes:
    db_path = tmp_path / "build.sqlite3"
    db_path.unlink(missing_ok=True)
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE entries (key VARCHAR(64) PRIMARY KEY, value BLOB)")
    db.executemany("INSERT INTO entries VALUES (?, ?)", records.items())
    db.commit()
    db.close()
    return db_path.read_bytes()


def _v1(tmp_path: Path, records: dict[str, bytes],
        extra: Sequence[tuple[str, bytes | None, bytes]] = ()) -> Path:
    database = _database(records, tmp_path)
    members = [("./", None, tarfile.DIRTYPE), ("./flistdb.sqlite3", database, tarfile.REGTYPE), *extra]
    path = tmp_path / "hostile.flist"
    path.write_bytes(_tar_gz(members))
    return path


ROOT = dir_key("")
REF = encrypt_block_v1(b"content")[0]


@pytest.mark.parametrize(
    ("root_contents", "message"),
    [
        ([("x/y", "file", [REF], 7)], r"name 'x/y' is not allowed"),
        ([("..", "file", [REF], 7)], r"name '\.\.' is not allowed"),
        ([("", "file", [REF], 7)], r"name '' is not allowed"),
        ([("a\0b", "file", [REF], 7)], r"name 'a\\x00b' is not allowed"),
        ([("f", "file", [REF], 7), ("f", "link", "x", 1)], r"'/f': duplicate name in '/'"),
        ([("f", "file", [], 7)], r"'/f': size 7 needs 1 blocks"),
        ([("f", "file", [REF, REF], 7)], r"'/f': size 7 needs 1 blocks .* lists 2"),
        ([("f", "file", [BlockRef(b"\1" * 32, b"\2" * 32)], 7)], r"'/f': block hash/key must be 16 bytes"),
        ([("l", "link", "", 0)], r"'/l': symlink without a valid target"),
        ([("d", "dir", dir_key("/nowhere"), 4096)], r"'/d': its directory record .* is missing"),
    ],
)
def test_v1_hostile_entries(tmp_path: Path, root_contents: Content, message: str) -> None:
    with pytest.raises(HostileFlist, match=message):
        _read_all(_v1(tmp_path, {ROOT: dir_record(root_contents)}))


def test_v1_file_through_a_symlink_cannot_be_expressed(tmp_path: Path) -> None:
    """`a -> /etc` then `a/passwd`: v1 can only say it with a '/' in a name, which is refused."""
    contents: Content = [("a", "link", "/etc", 4), ("a/passwd", "file", [REF], 7)]
    with pytest.raises(HostileFlist, match=r"name 'a/passwd' is not allowed"):
        _read_all(_v1(tmp_path, {ROOT: dir_record(contents)}))


def test_v1_directory_cycle(tmp_path: Path) -> None:
    sub = dir_key("/a")
    records = {ROOT: dir_record([("a", "dir", sub, 4096)]),
               sub: dir_record([("back", "dir", ROOT, 4096)], "a")}
    with pytest.raises(HostileFlist, match=r"'/a/back': directory cycle"):
        _read_all(_v1(tmp_path, records))


def test_v1_directory_listed_twice(tmp_path: Path) -> None:
    sub = dir_key("/a")
    records = {ROOT: dir_record([("a", "dir", sub, 4096), ("b", "dir", sub, 4096)]),
               sub: dir_record([], "a")}
    with pytest.raises(HostileFlist, match=r"'/b': directory cycle"):
        _read_all(_v1(tmp_path, records))


def test_v1_corrupt_record(tmp_path: Path) -> None:
    with pytest.raises(HostileFlist, match=r"directory '/': record .* is corrupt"):
        _read_all(_v1(tmp_path, {ROOT: b"\xff" * 64}))


def test_v1_truncated_record(tmp_path: Path) -> None:
    record = dir_record([("f", "file", [REF], 7)])
    with pytest.raises(HostileFlist, match=r"directory '/': record .* is corrupt"):
        _read_all(_v1(tmp_path, {ROOT: record[: len(record) // 2]}))


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("./etc/passwd", b"root:x:0:0", tarfile.REGTYPE), r"'\./etc/passwd': unexpected member"),
        (("../evil", b"x", tarfile.REGTYPE), r"'\.\./evil': path traversal"),
        (("/etc/evil", b"x", tarfile.REGTYPE), r"'/etc/evil': path traversal"),
        (("./flistdb.sqlite3", b"again", tarfile.REGTYPE), r"'\./flistdb\.sqlite3': appears twice"),
        (("./router.yaml", None, tarfile.SYMTYPE), r"'\./router\.yaml': must be a regular file"),
        (("./sub/", None, tarfile.DIRTYPE), r"'\./sub': unexpected member"),
    ],
)
def test_v1_archive_members(tmp_path: Path, member: tuple[str, bytes | None, bytes], message: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = _v1(tmp_path, {ROOT: dir_record([])}, [member])
    with pytest.raises(HostileFlist, match=message):
        open_flist(path)
    # nothing extracted by name anywhere, and the reader's own scratch copy is gone
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()
    assert list(scratch.iterdir()) == []


def test_v1_oversized_database(tmp_path: Path) -> None:
    path = _v1(tmp_path, {ROOT: dir_record([])})
    with pytest.raises(HostileFlist, match=r"bytes, more than the 1024 allowed"):
        open_flist(path, Limits(max_metadata_bytes=1024))


def test_v1_without_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.flist"
    path.write_bytes(_tar_gz([("./", None, tarfile.DIRTYPE)]))
    with pytest.raises(FlistError, match=r"no flistdb\.sqlite3 member"):
        open_flist(path)


def test_v1_corrupted_gzip(tmp_path: Path) -> None:
    good = _v1(tmp_path, {ROOT: dir_record([])}).read_bytes()
    path = tmp_path / "broken.flist"
    path.write_bytes(good[:12] + bytes(b ^ 0xFF for b in good[12:]))
    with pytest.raises(FlistError, match=r"broken\.flist: not a readable v1 flist"):
        open_flist(path)


def test_v1_corrupted_database(tmp_path: Path) -> None:
    database = bytearray(_database({ROOT: dir_record([])}, tmp_path))
    database[100:] = bytes(b ^ 0x5A for b in database[100:])
    path = tmp_path / "hostile.flist"
    path.write_bytes(_tar_gz([("./flistdb.sqlite3", bytes(database), tarfile.REGTYPE)]))
    with pytest.raises(FlistError, match=r"hostile\.flist: .*(corrupt|no 'entries' table)"):
        _read_all(path)


def test_v1_limits(tmp_path: Path) -> None:
    path = _v1(tmp_path, {ROOT: dir_record([("f", "file", [REF], 7), ("g", "link", "f", 1)])})
    with pytest.raises(HostileFlist, match=r"'/g': more than 2 entries"):
        _read_all(path, Limits(max_entries=2))


# --- blocks named by a hostile flist or served by a hostile store ----------------------------------


def test_tampered_golden_block_is_refused(golden: Path, tmp_path: Path) -> None:
    store_root = tmp_path / "blocks"
    shutil.copytree(golden / "blocks", store_root)
    with open_flist(golden / "v1.flist") as reader:
        entry = next(e for e in reader.entries() if e.path == "/usr/lib/x/random.bin")
    target = store_root / entry.blocks[1].id.hex()[:2] / entry.blocks[1].id.hex()
    tampered: dict[str, Callable[[bytes], bytes]] = {
        "flipped": lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:],
        "truncated": lambda b: b[: len(b) // 2],
        "empty": lambda b: b"",
    }
    original = target.read_bytes()

    async def fetch(ref: BlockRef) -> bytes:
        store = Router.single(f"dir://{store_root}")
        try:
            return decrypt_block(ref, await store.get(ref.id))
        finally:
            await store.aclose()

    assert len(asyncio.run(fetch(entry.blocks[1]))) == BLOCK_SIZE
    for how, change in tampered.items():
        target.write_bytes(change(original))
        with pytest.raises(BlockCorrupt, match=entry.blocks[1].id.hex()):
            asyncio.run(fetch(entry.blocks[1]))
        assert how
