"""The v1 reader: entries streamed out of the capnp records of a v1 flist's database (SPEC 4.2).

The archive is unpacked by :mod:`.archive` into a temporary directory this reader owns. Reading walks
directories from the root, one ``Dir`` record at a time, depth first (zflist's own order), so memory
grows with the depth of the tree, not its size.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError, HostileFlist, Limits
from zos_upgrade.flist.reader import EntryChecker, FlistReader, check_name, join
from zos_upgrade.flist.sqlite_guard import Deadline, QueryGuard, check_schema
from zos_upgrade.flist.stores import Route, StoreError
from zos_upgrade.flist.v1.archive import unpack
from zos_upgrade.flist.v1.routes import read_routes
from zos_upgrade.flist.v1.schema import HASH_BYTES, SPECIAL_TYPES, dir_key, load_schema, traversal_limit

__all__ = ["V1Reader"]


class _Acl:
    __slots__ = ("gid", "group", "mode", "uid", "user")

    def __init__(self, user: str, group: str, mode: int, uid: int, gid: int) -> None:
        self.user, self.group, self.mode, self.uid, self.gid = user, group, mode, uid, gid


_NO_ACL = _Acl("", "", 0o755, 0, 0)


class V1Reader(FlistReader):
    format = "v1"

    def __init__(self, path: Path, limits: Limits) -> None:
        self.path = path
        self.limits = limits
        self.source = str(path)
        self._tmp = Path(tempfile.mkdtemp(prefix="zu-flist-v1-"))
        # the scratch copy goes away even if a caller forgets close()
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)
        self._router_text: str | None = None
        self._acls: dict[str, _Acl] = {}
        self._db: sqlite3.Connection | None = None
        # the deadline counts from the open: inflating the archive is part of reading it
        deadline = Deadline(limits, self.source)
        try:
            unpacked = unpack(path, self._tmp, limits, deadline.check)
            self._router_text = unpacked.router_text
            self._db = sqlite3.connect(f"{unpacked.database.as_uri()}?mode=ro", uri=True,
                                       check_same_thread=False)
            self._guard = QueryGuard(self._db, self.source, unpacked.database.stat().st_size, limits,
                                     deadline=deadline)
            check_schema(self._db, self.source, "v1 flist", ("entries", "metadata"), ())
            self._check_schema()
        except BaseException:
            self.close()
            raise

    # --- the database ---------------------------------------------------------------------------

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        if self._db is None:
            raise FlistError(f"{self.source}: the flist reader is closed")
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise self._guard.failure(exc, "v1 flist") from exc

    def _tables(self) -> set[str]:
        return {row[0] for row in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _check_schema(self) -> None:
        if "entries" not in self._tables():
            raise FlistError(f"{self.source}: not a v1 flist: its database has no 'entries' table")

    def _value(self, key: str) -> bytes | None:
        rows = self._query("SELECT value FROM entries WHERE key = ?", (key,))
        if not rows:
            return None
        value = rows[0][0]
        if not isinstance(value, bytes):
            raise FlistError(f"{self.source}: entry value under key {key!r} is not a blob")
        return value

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._cleanup()

    # --- metadata -------------------------------------------------------------------------------

    def tags(self) -> dict[str, str]:
        self._guard.reset()
        if "metadata" not in self._tables():
            return {}
        return {str(k): v if isinstance(v, str) else "" if v is None else str(v)
                for k, v in self._query("SELECT key, value FROM metadata ORDER BY key")}

    def routes(self) -> list[Route]:
        try:
            # the metadata is read only when there is no router.yaml: it is the fallback
            backend = None if self._router_text is not None else self.tags().get("backend")
            return read_routes(self._router_text, backend, self.source)
        except StoreError as exc:
            raise FlistError(f"{self.source}: {exc}") from exc

    # --- entries --------------------------------------------------------------------------------

    def _acl(self, key: str, path: str) -> _Acl:
        if not key:
            return _NO_ACL
        acl = self._acls.get(key)
        if acl is not None:
            return acl
        value = self._value(key)
        if value is None:
            raise HostileFlist(f"{self.source}: entry {path!r}: its ACL {key!r} is missing")
        try:
            with load_schema().ACI.from_bytes(value, traversal_limit_in_words=traversal_limit(value)) as aci:
                acl = _Acl(aci.uname, aci.gname, aci.mode & 0o7777, max(aci.uid, 0), max(aci.gid, 0))
        except Exception as exc:
            raise HostileFlist(f"{self.source}: entry {path!r}: ACL {key!r} is corrupt: {exc}") from exc
        if len(self._acls) < 65536:
            self._acls[key] = acl
        return acl

    def _entry(self, path: str, kind: EntryKind, type_bits: int, acl: _Acl, **fields: Any) -> Entry:
        return Entry(path=path, kind=kind, mode=type_bits | acl.mode, uid=acl.uid, gid=acl.gid,
                     user=acl.user, group=acl.group, **fields)

    def _inode(self, path: str, inode: Any) -> tuple[Entry, str | None]:
        """One child entry, and the key of its Dir message when it is a directory."""
        acl = self._acl(inode.aclkey, path)
        common: dict[str, Any] = {"size": inode.size, "mtime": inode.modificationTime,
                                  "ctime": inode.creationTime}
        attributes = inode.attributes  # each access builds a new wrapper: take it once
        which = attributes.which()
        if which == "dir":
            return self._entry(path, EntryKind.DIR, stat.S_IFDIR, acl, **common), attributes.dir.key
        if which == "file":
            refs = []
            for block in attributes.file.blocks:
                block_id, key = bytes(block.hash), bytes(block.key)
                if len(block_id) != HASH_BYTES or len(key) != HASH_BYTES:
                    raise HostileFlist(f"{self.source}: entry {path!r}: block hash/key must be 16 bytes")
                refs.append(BlockRef(block_id, key))
            return self._entry(path, EntryKind.FILE, stat.S_IFREG, acl, blocks=tuple(refs), **common), None
        if which == "link":
            target = attributes.link.target
            if not target or "\0" in target:
                raise HostileFlist(f"{self.source}: entry {path!r}: symlink without a valid target")
            return self._entry(path, EntryKind.LINK, stat.S_IFLNK, acl, target=target, **common), None
        special = attributes.special
        type_name = str(special.type)
        if type_name not in SPECIAL_TYPES:
            raise HostileFlist(f"{self.source}: entry {path!r}: special file of unknown type {type_name!r}")
        rdev = 0
        if type_name in ("block", "chardev"):
            rdev = _parse_device(bytes(special.data), path, self.source)
        return self._entry(path, EntryKind.SPECIAL, SPECIAL_TYPES[type_name], acl, rdev=rdev, **common), None

    def _record(self, key: str, path: str) -> bytes:
        value = self._value(key)
        if value is None:
            raise HostileFlist(f"{self.source}: entry {path!r}: its directory record {key!r} is missing")
        return value

    def _corrupt(self, key: str, path: str, exc: Exception) -> HostileFlist:
        return HostileFlist(f"{self.source}: directory {path!r}: record {key!r} is corrupt: {exc}")

    def _open_dir(self, value: bytes) -> Any:
        limit = traversal_limit(value)
        return load_schema().Dir.from_bytes(value, traversal_limit_in_words=limit, nesting_limit=16)

    def _root(self, key: str) -> Entry:
        value = self._record(key, "/")
        try:
            with self._open_dir(value) as message:
                size, aclkey = message.size, message.aclkey
                mtime, ctime = message.modificationTime, message.creationTime
        except Exception as exc:
            raise self._corrupt(key, "/", exc) from exc
        return self._entry("/", EntryKind.DIR, stat.S_IFDIR, self._acl(aclkey, "/"),
                           size=size, mtime=mtime, ctime=ctime)

    def _listing(self, key: str, path: str) -> Iterator[tuple[Entry, str | None]]:
        """The children of one directory record, checked, with the record key of each subdirectory.

        Lazy: only this record is held, so a directory of a million entries streams too.
        """
        value = self._record(key, path)
        try:
            with self._open_dir(value) as message:
                names: set[str] = set()
                for inode in message.contents:
                    name = inode.name
                    check_name(name, f"{self.source}: directory {path!r}")
                    if name in names:
                        raise HostileFlist(
                            f"{self.source}: entry {join(path, name)!r}: duplicate name in {path!r}"
                        )
                    names.add(name)
                    yield self._inode(join(path, name), inode)
        except FlistError:
            raise
        except Exception as exc:
            raise self._corrupt(key, path, exc) from exc

    def entries(self) -> Iterator[Entry]:
        checker = EntryChecker(self.source, self.limits)
        self._guard.reset()
        root_key = dir_key("")
        yield checker.check(self._root(root_key))
        visited = {root_key}
        # depth-first, pre-order (zflist's own order): one open listing per level of depth
        stack: list[Iterator[tuple[Entry, str | None]]] = [self._listing(root_key, "/")]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            entry, sub_key = item
            self._guard.check_time()
            yield checker.check(entry)
            if sub_key is None:
                continue
            if sub_key in visited:
                raise HostileFlist(
                    f"{self.source}: entry {entry.path!r}: directory cycle (record {sub_key!r} "
                    "is already part of the tree)"
                )
            visited.add(sub_key)
            stack.append(self._listing(sub_key, entry.path))


def _parse_device(data: bytes, path: str, source: str) -> int:
    try:
        major, minor = (int(x) for x in data.decode("ascii").split(","))
        return os.makedev(major, minor)
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise HostileFlist(f"{source}: entry {path!r}: device data {data!r} is not 'major,minor'") from exc
