"""ReplayingReader over real flist files: a complete walk is replayed, nothing less is."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from zos_upgrade.flist import Entry, EntryKind, HostileFlist, open_flist, write_flist
from zos_upgrade.flist.blocks import encrypt_block_v2
from zos_upgrade.flist.replay import ReplayingReader

DIR, FILE, LINK = stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK


def _flist(tmp_path: Path) -> Path:
    ref = encrypt_block_v2(b"content")[0]
    path = tmp_path / "release.fl"
    write_flist(path, [
        Entry("/", EntryKind.DIR, DIR | 0o755),
        Entry("/etc", EntryKind.DIR, DIR | 0o755),
        Entry("/etc/motd", EntryKind.FILE, FILE | 0o644, size=7, blocks=(ref,)),
        Entry("/etc/link", EntryKind.LINK, LINK | 0o777, target="motd"),
    ], tags={"version": "1.0.0"})
    return path


def test_the_second_walk_is_the_first_one_replayed_without_the_database(tmp_path: Path) -> None:
    path = _flist(tmp_path)
    with open_flist(path) as plain:
        expected = list(plain.entries())
    inner = open_flist(path)
    with ReplayingReader(inner) as reader:
        assert (reader.format, reader.path, reader.tags()) == ("v2", inner.path, {"version": "1.0.0"})
        assert list(reader.entries()) == expected
        inner.close()  # the replay never reads the database again (a read would fail now)
        assert list(reader.entries()) == expected
        assert list(reader.entries()) == expected


def test_a_walk_left_early_is_not_kept(tmp_path: Path) -> None:
    path = _flist(tmp_path)
    with open_flist(path) as plain:
        expected = list(plain.entries())
    with ReplayingReader(open_flist(path)) as reader:
        walk = reader.entries()
        assert next(walk) == expected[0]
        walk.close()
        assert list(reader.entries()) == expected  # read again from the database, in full


def test_a_hostile_flist_fails_every_walk(tmp_path: Path) -> None:
    path = _flist(tmp_path)
    db = sqlite3.connect(path)
    db.execute("UPDATE inode SET name = 'motd' WHERE name = 'link'")
    db.commit()
    db.close()
    with ReplayingReader(open_flist(path)) as reader:
        for _ in range(2):
            seen = []
            with pytest.raises(HostileFlist, match="duplicate name"):
                seen.extend(reader.entries())
            assert [e.path for e in seen] == ["/", "/etc", "/etc/motd"]  # never past the lie
