"""ReplayingReader over real flist files: a complete walk is replayed, nothing less is."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flist.test_hostile_read import _v2
from zos_upgrade.flist import HostileFlist, open_flist
from zos_upgrade.flist.replay import ReplayingReader


def test_the_second_walk_is_the_first_one_replayed_without_the_database(tmp_path: Path) -> None:
    path = _v2(tmp_path)
    with open_flist(path) as plain:
        expected, tags = list(plain.entries()), plain.tags()
    inner = open_flist(path)
    with ReplayingReader(inner) as reader:
        assert (reader.format, reader.path, reader.tags()) == ("v2", inner.path, tags)
        assert list(reader.entries()) == expected
        inner.close()  # the replay never reads the database again (a read would fail now)
        assert list(reader.entries()) == expected
        assert list(reader.entries()) == expected


def test_a_walk_left_early_is_not_kept(tmp_path: Path) -> None:
    path = _v2(tmp_path)
    with open_flist(path) as plain:
        expected = list(plain.entries())
    with ReplayingReader(open_flist(path)) as reader:
        walk = reader.entries()
        assert next(walk) == expected[0]
        walk.close()
        assert list(reader.entries()) == expected  # read again from the database, in full


def test_a_hostile_flist_fails_every_walk(tmp_path: Path) -> None:
    path = _v2(tmp_path, "UPDATE inode SET name = 'passwd' WHERE name = 'link'")
    with ReplayingReader(open_flist(path)) as reader:
        for _ in range(2):
            seen = []
            with pytest.raises(HostileFlist, match="duplicate name"):
                seen.extend(reader.entries())
            assert [e.path for e in seen][-2:] == ["/etc", "/etc/passwd"]  # never past the lie
