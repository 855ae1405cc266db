"""The v1 archive: the tar.gz around the database, written byte-identically with fixed headers."""

from __future__ import annotations

import tarfile
from pathlib import Path

from tests.flist.v1.test_format import sample_entries
from zos_upgrade.flist import write_flist


def test_archive_holds_only_the_database_with_fixed_headers(tmp_path: Path) -> None:
    path = tmp_path / "a.flist"
    write_flist(path, sample_entries())
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    with tarfile.open(path) as archive:
        members = archive.getmembers()
    assert [(m.name, m.type, m.mtime, m.uid, m.gid) for m in members] == [
        (".", tarfile.DIRTYPE, 0, 0, 0), ("./flistdb.sqlite3", tarfile.REGTYPE, 0, 0, 0)
    ]
