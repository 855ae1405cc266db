"""The v2 writer: entries into a new rfs "FungiList" SQLite database, written atomically."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from zos_upgrade.flist.chunking import chunking_from_tags
from zos_upgrade.flist.model import Entry, EntryKind, FlistError, HostileFlist, Limits
from zos_upgrade.flist.reader import EntryChecker, check_name
from zos_upgrade.flist.stores import Route
from zos_upgrade.flist.v2.schema import BLOCK_LENGTH_COLUMN, ROOT_INO, SCHEMA, V2_HASH_BYTES
from zos_upgrade.fsutil import fsync_dir, temp_sibling

__all__ = ["write_v2"]

_INSERT_SIZED = f"INSERT INTO block (ino, id, key, {BLOCK_LENGTH_COLUMN}) VALUES (?, ?, ?, ?)"


def _insert_rows(db: sqlite3.Connection, entries: Iterable[Entry], tags: Mapping[str, str],
                 routes: Sequence[Route], source: str) -> None:
    db.executescript(SCHEMA)
    cdc = chunking_from_tags(tags, "v2", source).kind == "cdc"
    if cdc:
        db.execute(f"ALTER TABLE block ADD COLUMN {BLOCK_LENGTH_COLUMN} INTEGER")
    dirs: dict[str, int] = {}
    seen: set[str] = set()
    checker = EntryChecker(source, Limits(max_entries=2**62, max_total_bytes=2**62, max_file_bytes=2**62))
    root_written = False
    for entry in entries:
        checker.check(entry)
        if entry.path in seen:
            raise HostileFlist(f"{source}: entry {entry.path!r} appears twice")
        seen.add(entry.path)
        if entry.path == "/":
            if root_written:
                raise FlistError(f"{source}: the root entry must come first")
            parent, name = 0, "/"
        else:
            if not entry.path.startswith("/"):
                raise FlistError(f"{source}: entry path {entry.path!r} is not absolute")
            name = entry.name
            check_name(name, f"{source}: directory {entry.parent!r}")
            if not root_written:
                _insert_root(db)
                dirs["/"] = ROOT_INO
                root_written = True
            parent_ino = dirs.get(entry.parent)
            if parent_ino is None:
                raise FlistError(
                    f"{source}: entry {entry.path!r} comes before its directory {entry.parent!r} "
                    "(entries must be given parents first)"
                )
            parent = parent_ino
        cursor = db.execute(
            "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (parent, name, entry.size, entry.uid, entry.gid, entry.mode, entry.rdev, entry.ctime,
             entry.mtime),
        )
        ino = int(cursor.lastrowid or 0)
        if entry.path == "/":
            root_written = True
            dirs["/"] = ino
        elif entry.kind is EntryKind.DIR:
            dirs[entry.path] = ino
        if entry.kind is EntryKind.LINK:
            db.execute("INSERT INTO extra (ino, data) VALUES (?, ?)", (ino, entry.target))
        for ref in entry.blocks:
            if len(ref.id) != V2_HASH_BYTES or len(ref.key) != V2_HASH_BYTES:
                raise FlistError(f"{source}: entry {entry.path!r}: v2 blocks need 32-byte ids and keys")
        if entry.blocks and cdc != bool(entry.lengths):
            raise FlistError(
                f"{source}: entry {entry.path!r}: " + ("a cdc flist needs every block's length" if cdc else
                                                       "block lengths need a cdc flist (its chunking tag)"))
        if cdc:
            rows = [(ino, ref.id, ref.key, n) for ref, n in zip(entry.blocks, entry.lengths, strict=True)]
            db.executemany(_INSERT_SIZED, rows)
        else:
            db.executemany("INSERT INTO block (ino, id, key) VALUES (?, ?, ?)",
                           [(ino, ref.id, ref.key) for ref in entry.blocks])
    if not root_written:
        _insert_root(db)
    db.executemany("INSERT INTO tag (key, value) VALUES (?, ?)", sorted(tags.items()))
    db.executemany("INSERT INTO route (start, end, url) VALUES (?, ?, ?)",
                   [(r.start, r.end, r.url) for r in routes])


def _insert_root(db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO inode (ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime) "
        "VALUES (?, 0, '/', 0, 0, 0, ?, 0, 0, 0)", (ROOT_INO, stat.S_IFDIR | 0o755),
    )


def write_v2(path: Path, entries: Iterable[Entry], *, tags: Mapping[str, str] = {},
             routes: Sequence[Route] = ()) -> None:
    """Write a v2 ``.fl`` atomically; entries must come parents first (any path-sorted order does)."""
    tmp = temp_sibling(path)
    try:
        db = sqlite3.connect(tmp)
        try:
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            with db:
                _insert_rows(db, entries, tags, routes, str(path))
        finally:
            db.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
