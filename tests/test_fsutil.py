from __future__ import annotations

import os
from pathlib import Path

import pytest

from zos_upgrade.fsutil import (
    TEMP_MARK,
    atomic_symlink,
    atomic_write_bytes,
    atomic_write_json,
    atomic_writer,
    read_at_most,
)


def test_atomic_write_replaces_content_and_sets_mode(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new", mode=0o400)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o400
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_failed_write_leaves_old_content_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b"half")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert not any(TEMP_MARK in p.name for p in tmp_path.iterdir())


def test_atomic_json_is_sorted(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "j", {"b": 1, "a": 2})
    assert (tmp_path / "j").read_text() == '{"a": 2, "b": 1}'


def test_atomic_symlink_replaces_existing_link(tmp_path: Path) -> None:
    link = tmp_path / "latest"
    atomic_symlink("a", link)
    atomic_symlink("b", link)
    assert os.readlink(link) == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_read_at_most_reads_one_byte_past_the_limit_and_says_none_for_no_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    assert read_at_most(tmp_path / "f", 4) == b"01234"  # one more than the limit: the caller sees "too big"
    assert read_at_most(tmp_path / "f", 100) == b"0123456789"
    assert read_at_most(tmp_path / "absent", 4) is None
    assert read_at_most(tmp_path / "f" / "below-a-file", 4) is None
    with pytest.raises(IsADirectoryError):
        read_at_most(tmp_path, 4)
