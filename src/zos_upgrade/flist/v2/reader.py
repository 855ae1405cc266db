"""The v2 reader: entries streamed out of an rfs "FungiList" SQLite database (SPEC 4.1).

Reading walks the tree from the root (ino 1) one directory at a time with the ``parent`` index, so
memory grows with the number of directories still to visit, never with the number of entries.
Rows the walk cannot reach (parent loops, orphans, children of files) are hostile: the walk counts
what it reached and compares with the table. The database is read behind
:mod:`zos_upgrade.flist.sqlite_guard`: its schema checked first, every query's work bounded.
"""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from zos_upgrade.flist.chunking import Chunking, ChunkingError, chunking_from_tags
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError, HostileFlist, Limits
from zos_upgrade.flist.reader import EntryChecker, FlistReader, check_name, join
from zos_upgrade.flist.sqlite_guard import QueryGuard, check_schema
from zos_upgrade.flist.stores import Route, StoreError
from zos_upgrade.flist.v2.schema import (
    BLOCK_LENGTH_COLUMN,
    INDEXES,
    REQUIRED_COLUMNS,
    ROOT_INO,
    TABLES,
    V2_HASH_BYTES,
    kind_of,
)

__all__ = ["V2Reader"]

# one query per directory brings its children with their symlink targets and blocks (in block order)
# (a cdc flist's block lengths come along; a fixed one has no such column and gets NULLs)
_CHILDREN = (
    "SELECT i.ino, i.name, i.size, i.uid, i.gid, i.mode, i.rdev, i.ctime, i.mtime, e.data, "
    "b.id, b.key, {length} "
    "FROM inode i LEFT JOIN extra e ON e.ino = i.ino LEFT JOIN block b ON b.ino = i.ino "
    "WHERE i.parent = ? ORDER BY i.name, i.ino, b.rowid"
)
_ROOT = (
    "SELECT i.ino, i.name, i.size, i.uid, i.gid, i.mode, i.rdev, i.ctime, i.mtime, e.data, i.parent "
    "FROM inode i LEFT JOIN extra e ON e.ino = i.ino WHERE i.ino = ?"
)


# sqlite reports a corrupt page while stepping, and Python fails to decode corrupt text: both mean
# an unreadable database, never a crash
_UNREADABLE = (sqlite3.DatabaseError, UnicodeDecodeError)


class _Fetched(list[Any]):
    """Rows already fetched, read like a cursor."""

    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


class V2Reader(FlistReader):
    format = "v2"

    def __init__(self, path: Path, limits: Limits) -> None:
        self.path = path
        self.limits = limits
        self.source = str(path)
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            size = path.stat().st_size
        except (sqlite3.Error, OSError) as exc:
            raise FlistError(f"{path}: cannot open v2 flist database: {exc}") from exc
        try:
            self._guard = QueryGuard(self._db, self.source, size, limits)
            check_schema(self._db, self.source, "v2 flist", TABLES, INDEXES)
            self._check_schema()
        except BaseException:
            self._db.close()
            raise

    # --- plumbing -------------------------------------------------------------------------------

    def _query(self, sql: str, args: Sequence[Any] = ()) -> _Fetched:
        # sqlite reports a corrupt page (or undecodable text) while stepping, not only at execute:
        # fetch inside the handler so no sqlite3 error escapes (streaming reads use _cursor)
        try:
            return _Fetched(self._db.execute(sql, tuple(args)).fetchall())
        except _UNREADABLE as exc:
            raise self._guard.failure(exc, "v2 flist") from exc

    def _cursor(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(args))
        except _UNREADABLE as exc:
            raise self._guard.failure(exc, "v2 flist") from exc

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._query(f"PRAGMA table_info({table})")}

    def _check_schema(self) -> None:
        for table, needed in REQUIRED_COLUMNS.items():
            missing = needed - self._columns(table)
            if missing:
                raise FlistError(
                    f"{self.source}: not a v2 flist: table {table!r} lacks columns {sorted(missing)}"
                )

    def close(self) -> None:
        self._db.close()

    def chunking(self) -> Chunking:
        """How the files were cut: the ``chunking`` tag, which must agree with the block table (a
        cdc flist records every block's length, a fixed one none)."""
        chunking = chunking_from_tags(self.tags(), "v2", self.source)
        has_lengths = BLOCK_LENGTH_COLUMN in self._columns("block")
        if has_lengths != (chunking.kind == "cdc"):
            raise HostileFlist(
                f"{self.source}: its block table " + ("records block lengths but no cdc chunking tag says so"
                                                      if has_lengths else
                                                      f"lacks the block lengths its chunking tag "
                                                      f"{chunking.tag_value!r} needs")
            )
        return chunking

    # --- metadata -------------------------------------------------------------------------------

    def tags(self) -> dict[str, str]:
        self._guard.reset()
        if not self._columns("tag"):
            return {}
        return {str(k): str(v) for k, v in self._query("SELECT key, value FROM tag ORDER BY rowid")}

    def routes(self) -> list[Route]:
        self._guard.reset()
        if not self._columns("route"):
            return []
        routes = []
        for start, end, url in self._query("SELECT start, end, url FROM route ORDER BY rowid"):
            if not (isinstance(start, int) and isinstance(end, int) and isinstance(url, str)):
                raise FlistError(f"{self.source}: route row ({start!r}, {end!r}, {url!r}) is malformed")
            try:
                routes.append(Route(start, end, url))
            except StoreError as exc:
                raise FlistError(f"{self.source}: {exc}") from exc
        return routes

    # --- entries --------------------------------------------------------------------------------

    def _block(self, block_id: Any, key: Any, path: str) -> BlockRef:
        if not (isinstance(block_id, bytes) and isinstance(key, bytes)
                and len(block_id) == V2_HASH_BYTES and len(key) == V2_HASH_BYTES):
            raise HostileFlist(
                f"{self.source}: entry {path!r}: block id/key must be {V2_HASH_BYTES}-byte blobs"
            )
        return BlockRef(block_id, key)

    def _lengths(self, blocks: Sequence[tuple[Any, Any, Any]], path: str,
                 chunking: Chunking) -> tuple[int, ...]:
        if chunking.kind == "fixed" or not blocks:
            return ()
        lengths = tuple(block[2] for block in blocks)
        bad = [n for n in lengths if n.__class__ is not int or not 0 < n <= chunking.max_size]
        if bad:
            raise HostileFlist(f"{self.source}: entry {path!r}: block length {bad[0]!r} is outside "
                               f"1..{chunking.max_size} (its chunking tag's largest chunk)")
        return lengths

    def _entry(self, path: str, row: Sequence[Any], blocks: Sequence[tuple[Any, Any, Any]] = (),
               chunking: Chunking | None = None) -> Entry:
        _ino, _name, size, uid, gid, mode, rdev, ctime, mtime, extra = row[:10]
        if mode.__class__ is not int or any(
            n is not None and n.__class__ is not int for n in (size, uid, gid, rdev, ctime, mtime)
        ):
            numbers = (size, uid, gid, mode, rdev, ctime, mtime)
            raise HostileFlist(f"{self.source}: entry {path!r}: non-integer inode fields {numbers!r}")
        kind = kind_of(mode)
        target = ""
        if kind is EntryKind.LINK:
            if not isinstance(extra, str) or not extra or "\0" in extra:
                raise HostileFlist(f"{self.source}: entry {path!r}: symlink without a valid target")
            target = extra
        return Entry(
            path=path, kind=kind, mode=mode, size=size or 0, uid=uid or 0, gid=gid or 0,
            mtime=mtime or 0, ctime=ctime or 0, target=target, rdev=rdev or 0,
            blocks=tuple([self._block(b[0], b[1], path) for b in blocks]) if blocks else (),
            lengths=self._lengths(blocks, path, chunking) if chunking is not None else (),
        )

    def _count(self, sql: str) -> int:
        row = self._query(sql).fetchone()
        return int(row[0]) if row else 0

    def entries(self) -> Iterator[Entry]:
        checker = EntryChecker(self.source, self.limits)
        try:
            chunking = self.chunking()
        except ChunkingError as exc:  # an unknown chunking: its blocks cannot be laid out
            raise HostileFlist(str(exc)) from exc
        children = _CHILDREN.format(length=f"b.{BLOCK_LENGTH_COLUMN}" if chunking.kind == "cdc" else "NULL")
        self._guard.reset()
        total = self._count("SELECT count(*) FROM inode")
        if total > self.limits.max_entries:
            raise HostileFlist(
                f"{self.source}: {total} entries, more than the {self.limits.max_entries} allowed"
            )
        stray = self._query(
            "SELECT b.ino FROM block b JOIN inode i ON i.ino = b.ino WHERE (i.mode & ?) != ? LIMIT 1",
            (stat.S_IFMT(0o177777), stat.S_IFREG),
        ).fetchone()
        if stray is not None:
            raise HostileFlist(
                f"{self.source}: entry {self._path_of(stray[0])!r}: a non-file entry carries content blocks"
            )
        root = self._query(_ROOT, (ROOT_INO,)).fetchone()
        if root is None or root[10] != 0 or root[1] != "/":
            raise HostileFlist(f"{self.source}: no root inode (expected ino=1, parent=0, name='/')")
        yield checker.check(self._entry("/", root))
        reached = 1
        # depth-first, pre-order: one open cursor per level of depth, never the whole table
        stack: list[tuple[str, Iterator[tuple[Sequence[Any], list[tuple[Any, Any, Any]]]],
                          list[str | None]]] = [
            ("/", self._rows(children, ROOT_INO), [None])
        ]
        while stack:
            dir_path, rows, previous = stack[-1]
            item = next(rows, None)
            if item is None:
                stack.pop()
                continue
            row, blocks = item
            name = row[1]
            if not isinstance(name, str):
                raise HostileFlist(f"{self.source}: entry in {dir_path!r}: name {name!r} is not text")
            check_name(name, f"{self.source}: directory {dir_path!r}")
            path = join(dir_path, name)
            if name == previous[0]:  # rows come sorted by name: a duplicate is always the next row
                raise HostileFlist(f"{self.source}: entry {path!r}: duplicate name in {dir_path!r}")
            previous[0] = name
            entry = checker.check(self._entry(path, row, blocks, chunking))
            self._guard.check_time()
            reached += 1
            yield entry
            if entry.kind is EntryKind.DIR:
                stack.append((path, self._rows(children, row[0]), [None]))
        if reached != total:
            raise HostileFlist(f"{self.source}: {self._unreachable()}")

    def _rows(self, sql: str, dir_ino: int) -> Iterator[tuple[Sequence[Any], list[tuple[Any, Any, Any]]]]:
        """The children of a directory, each with its (id, key, length) block rows, streamed."""
        cursor = self._cursor(sql, (dir_ino,))
        current: Sequence[Any] | None = None
        blocks: list[tuple[Any, Any, Any]] = []
        while True:
            try:
                rows = cursor.fetchmany(1024)
            except _UNREADABLE as exc:
                raise self._guard.failure(exc, "v2 flist") from exc
            if not rows:
                break
            for row in rows:
                if current is None or row[0] != current[0]:
                    if current is not None:
                        yield current, blocks
                    current, blocks = row[:10], []
                if row[10] is not None or row[11] is not None:
                    blocks.append((row[10], row[11], row[12]))
        if current is not None:
            yield current, blocks

    def _path_of(self, ino: int) -> str:
        """Best-effort path of an inode for error messages (stops at loops)."""
        names: list[str] = []
        seen: set[int] = set()
        current = ino
        while current not in (0, ROOT_INO) and current not in seen and len(names) <= self.limits.max_depth:
            seen.add(current)
            row = self._query("SELECT parent, name FROM inode WHERE ino = ?", (current,)).fetchone()
            if row is None:
                names.append(f"<missing inode {current}>")
                break
            names.append(str(row[1]))
            current = row[0]
        return "/" + "/".join(reversed(names))

    def _unreachable(self) -> str:
        """Explain why some inode is not reachable from the root: a loop, an orphan, a file parent."""
        for ino, name in self._query("SELECT ino, name FROM inode WHERE ino != ?", (ROOT_INO,)).fetchall():
            seen = {ino}
            current = ino
            while True:
                row = self._query("SELECT parent FROM inode WHERE ino = ?", (current,)).fetchone()
                parent = row[0] if row else None
                if parent == ROOT_INO:
                    break
                if parent is None or parent == 0:
                    return f"entry {name!r} (ino {ino}) hangs off a missing parent inode {parent}"
                if parent in seen:
                    return f"entry {name!r} (ino {ino}): directory cycle through inode {parent}"
                prow = self._query("SELECT mode FROM inode WHERE ino = ?", (parent,)).fetchone()
                if prow is None:
                    return f"entry {name!r} (ino {ino}) hangs off a missing parent inode {parent}"
                if not stat.S_ISDIR(prow[0] or 0):
                    return f"entry {self._path_of(ino)!r}: its parent is not a directory"
                seen.add(parent)
                current = parent
        return "some inodes are not reachable from the root"
