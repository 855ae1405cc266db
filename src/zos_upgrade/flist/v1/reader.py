"""The v1 flist format: 0-flist's tar.gz holding a SQLite database of capnp messages (SPEC 4.2).

The archive is never extracted by name: its members are checked one by one, and only the database
(and ``router.yaml``) are copied, with a size limit, into a temporary directory this reader owns.
Directories are keyed by ``blake2b(relative path, 16)``; each holds a ``Dir`` message listing its
``Inode`` children. ACLs (owner, group, permission bits) are separate messages keyed by
``blake2b(description, 8)``. Reading walks directories from the root, one message at a time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import weakref
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import capnp
import yaml

from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError, HostileFlist, Limits
from zos_upgrade.flist.reader import EntryChecker, FlistReader, check_name, join
from zos_upgrade.flist.stores import Route, StoreError
from zos_upgrade.fsutil import atomic_writer

__all__ = ["V1Reader", "acl_key", "dir_key", "write_v1"]

log = logging.getLogger(__name__)

DB_MEMBER = "flistdb.sqlite3"
ROUTER_MEMBER = "router.yaml"
_MAX_ROUTER_BYTES = 1024 * 1024
_V1_HASH_BYTES = 16
_DIR_SIZE = 4096
_BLOCK_SIZE_FIELD = 128  # 128 x 4 KiB = 512 KiB, as zflist writes it

_SPECIAL_TYPES = {
    "socket": stat.S_IFSOCK, "block": stat.S_IFBLK, "chardev": stat.S_IFCHR, "fifopipe": stat.S_IFIFO,
}
_SPECIAL_NAMES = {v: k for k, v in _SPECIAL_TYPES.items()}

_schema: Any = None


def _capnp() -> Any:
    """The schema module, loaded once from the package data."""
    global _schema
    if _schema is None:
        with resources.as_file(resources.files("zos_upgrade.flist") / "flist.capnp") as schema_path:
            _schema = capnp.load(str(schema_path))
    return _schema


def dir_key(path: str) -> str:
    """The entries-table key of a directory: blake2b-16 of its path without the leading slash."""
    relative = path.strip("/")
    return hashlib.blake2b(relative.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def acl_key(user: str, group: str, mode: int, uid: int, gid: int) -> str:
    """The entries-table key of an ACL (permission bits only)."""
    text = f"user:{user}\ngroup:{group}\nmode:{oct(stat.S_IMODE(mode))}\nuid:{uid}\ngid:{gid}"
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def _traversal_limit(message: bytes) -> int:
    # a capnp message can point at the same bytes many times; never read more than a few times its size
    return max(len(message) // 8 * 4, 1 << 12)


class _Acl:
    __slots__ = ("gid", "group", "mode", "uid", "user")

    def __init__(self, user: str, group: str, mode: int, uid: int, gid: int) -> None:
        self.user, self.group, self.mode, self.uid, self.gid = user, group, mode, uid, gid


_NO_ACL = _Acl("", "", 0o755, 0, 0)


# --- reading ---------------------------------------------------------------------------------------


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
        try:
            db_path = self._unpack()
            self._db = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
            self._check_schema()
        except BaseException:
            self.close()
            raise

    # --- the archive ----------------------------------------------------------------------------

    def _member_error(self, name: str, why: str) -> HostileFlist:
        return HostileFlist(f"{self.source}: archive member {name!r}: {why}")

    def _unpack(self) -> Path:
        db_path: Path | None = None
        try:
            with tarfile.open(self.path, mode="r:gz") as archive:
                for member in archive:
                    db_path = self._take(archive, member, db_path)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise FlistError(f"{self.source}: not a readable v1 flist (tar.gz): {exc}") from exc
        if db_path is None:
            raise FlistError(f"{self.source}: v1 flist has no {DB_MEMBER} member")
        return db_path

    def _take(self, archive: tarfile.TarFile, member: tarfile.TarInfo, db_path: Path | None) -> Path | None:
        raw = member.name
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if raw.startswith("/") or ".." in raw.split("/") or "\0" in raw:
            raise self._member_error(raw, "path traversal (absolute or '..') is not allowed")
        if not parts:
            if not member.isdir():
                raise self._member_error(raw, "the archive root must be a directory")
            return db_path
        name = "/".join(parts)
        if name not in (DB_MEMBER, ROUTER_MEMBER):
            raise self._member_error(
                raw, f"unexpected member; a v1 flist holds only {DB_MEMBER} and {ROUTER_MEMBER}"
            )
        if not member.isreg():
            raise self._member_error(raw, "must be a regular file")
        if name == ROUTER_MEMBER:
            if self._router_text is not None:
                raise self._member_error(raw, "appears twice")
            if member.size > _MAX_ROUTER_BYTES:
                raise self._member_error(raw, f"{member.size} bytes, more than {_MAX_ROUTER_BYTES}")
            handle = archive.extractfile(member)
            assert handle is not None  # a regular member always has content
            self._router_text = handle.read(_MAX_ROUTER_BYTES + 1).decode("utf-8", "replace")
            return db_path
        if db_path is not None:
            raise self._member_error(raw, "appears twice")
        if member.size > self.limits.max_metadata_bytes:
            raise self._member_error(
                raw, f"{member.size} bytes, more than the {self.limits.max_metadata_bytes} allowed"
            )
        handle = archive.extractfile(member)
        assert handle is not None
        target = self._tmp / DB_MEMBER
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(handle, out, 1024 * 1024)
        return target

    # --- the database ---------------------------------------------------------------------------

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        if self._db is None:
            raise FlistError(f"{self.source}: the flist reader is closed")
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise FlistError(f"{self.source}: v1 flist database is corrupt or unreadable: {exc}") from exc

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
        if "metadata" not in self._tables():
            return {}
        return {str(k): v if isinstance(v, str) else "" if v is None else str(v)
                for k, v in self._query("SELECT key, value FROM metadata ORDER BY key")}

    def routes(self) -> list[Route]:
        try:
            if self._router_text is not None:
                return _parse_router_yaml(self._router_text, self.source)
            backend = self.tags().get("backend")
            return [] if not backend else [Route(0, 255, _backend_url(backend, self.source))]
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
            with _capnp().ACI.from_bytes(value, traversal_limit_in_words=_traversal_limit(value)) as aci:
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
                if len(block_id) != _V1_HASH_BYTES or len(key) != _V1_HASH_BYTES:
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
        if type_name not in _SPECIAL_TYPES:
            raise HostileFlist(f"{self.source}: entry {path!r}: special file of unknown type {type_name!r}")
        rdev = 0
        if type_name in ("block", "chardev"):
            rdev = _parse_device(bytes(special.data), path, self.source)
        return self._entry(path, EntryKind.SPECIAL, _SPECIAL_TYPES[type_name], acl, rdev=rdev, **common), None

    def _record(self, key: str, path: str) -> bytes:
        value = self._value(key)
        if value is None:
            raise HostileFlist(f"{self.source}: entry {path!r}: its directory record {key!r} is missing")
        return value

    def _corrupt(self, key: str, path: str, exc: Exception) -> HostileFlist:
        return HostileFlist(f"{self.source}: directory {path!r}: record {key!r} is corrupt: {exc}")

    def _open_dir(self, value: bytes) -> Any:
        limit = _traversal_limit(value)
        return _capnp().Dir.from_bytes(value, traversal_limit_in_words=limit, nesting_limit=16)

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


def _backend_url(text: str, source: str) -> str:
    """``metadata.backend`` JSON -> ``zdb://[:password@]host:port[/namespace]``."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise FlistError(f"{source}: metadata 'backend' is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("host"), str) or not doc["host"]:
        raise FlistError(f"{source}: metadata 'backend' needs a 'host' string, got {text!r}")
    port = doc.get("port", 9900)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise FlistError(f"{source}: metadata 'backend' port {port!r} is not a TCP port")
    namespace, password = doc.get("namespace"), doc.get("password")
    if namespace is not None and not isinstance(namespace, str):
        raise FlistError(f"{source}: metadata 'backend' namespace {namespace!r} is not a string")
    if password is not None and not isinstance(password, str):
        raise FlistError(f"{source}: metadata 'backend' password is not a string")
    auth = f":{quote(password, safe='')}@" if password else ""
    host = f"[{doc['host']}]" if ":" in doc["host"] else doc["host"]
    tail = f"/{quote(namespace, safe='')}" if namespace else ""
    return f"zdb://{auth}{host}:{port}{tail}"


def _parse_router_yaml(text: str, source: str) -> list[Route]:
    """``router.yaml``: ``pools: {name: {"00:7f": url, ...}}`` and ``lookup: [name, ...]`` (hex ranges)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlistError(f"{source}: router.yaml is not YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("pools"), dict):
        raise FlistError(f"{source}: router.yaml needs a 'pools' mapping")
    pools = doc["pools"]
    lookup = doc.get("lookup", list(pools))
    if not isinstance(lookup, list):
        raise FlistError(f"{source}: router.yaml 'lookup' must be a list of pool names")
    routes = []
    for pool_name in lookup:
        pool = pools.get(pool_name)
        if not isinstance(pool, dict):
            raise FlistError(f"{source}: router.yaml: pool {pool_name!r} is missing or not a mapping")
        for span, url in pool.items():
            try:
                start_hex, end_hex = str(span).split(":")
                start, end = int(start_hex, 16), int(end_hex, 16)
            except ValueError as exc:
                raise FlistError(f"{source}: router.yaml: range {span!r} is not 'hh:hh'") from exc
            if not isinstance(url, str):
                raise FlistError(f"{source}: router.yaml: range {span!r} maps to {url!r}, not a URL")
            routes.append(Route(start, end, url))
    return routes


def _router_yaml(routes: Sequence[Route]) -> str:
    pool = {f"{r.start:02x}:{r.end:02x}": r.url for r in routes}
    return yaml.safe_dump({"pools": {"default": pool}, "lookup": ["default"]}, sort_keys=False)


def _backend_json(url: str) -> str | None:
    """The ``metadata.backend`` form of a zdb URL (None when the URL is not zdb)."""
    parts = urlsplit(url)
    if parts.scheme != "zdb" or not parts.hostname:
        return None
    doc: dict[str, Any] = {"host": parts.hostname, "port": parts.port or 9900}
    namespace = parts.path.strip("/")
    if namespace:
        doc["namespace"] = namespace
    if parts.password:
        doc["password"] = parts.password
    return json.dumps(doc)


# --- writing ---------------------------------------------------------------------------------------


def _fill_inode(inode: Any, entry: Entry, acl: str) -> None:
    inode.name = entry.name
    inode.aclkey = acl
    inode.modificationTime = entry.mtime & 0xFFFFFFFF
    inode.creationTime = entry.ctime & 0xFFFFFFFF
    if entry.kind is EntryKind.DIR:
        inode.size = _DIR_SIZE
        inode.attributes.init("dir").key = dir_key(entry.path)
    elif entry.kind is EntryKind.FILE:
        inode.size = entry.size
        file = inode.attributes.init("file")
        file.blockSize = _BLOCK_SIZE_FIELD
        blocks = file.init("blocks", len(entry.blocks))
        for slot, ref in zip(blocks, entry.blocks, strict=True):
            slot.hash, slot.key = ref.id, ref.key
    elif entry.kind is EntryKind.LINK:
        inode.size = len(entry.target.encode("utf-8", "surrogateescape"))
        inode.attributes.init("link").target = entry.target
    else:
        inode.size = entry.size
        special = inode.attributes.init("special")
        special.type = _SPECIAL_NAMES[stat.S_IFMT(entry.mode)]
        if stat.S_IFMT(entry.mode) in (stat.S_IFBLK, stat.S_IFCHR):
            special.data = f"{os.major(entry.rdev)},{os.minor(entry.rdev)}".encode()


def _owner(entry: Entry) -> tuple[str, str]:
    user = entry.user or ("root" if entry.uid == 0 else str(entry.uid))
    group = entry.group or ("root" if entry.gid == 0 else str(entry.gid))
    return user, group


def _build_db(db: sqlite3.Connection, entries: Iterable[Entry], tags: Mapping[str, str], source: str) -> None:
    db.execute("CREATE TABLE entries (key VARCHAR(64) PRIMARY KEY, value BLOB)")
    db.execute("CREATE TABLE metadata (key VARCHAR(64) PRIMARY KEY, value TEXT)")
    checker = EntryChecker(source, Limits(max_entries=2**62, max_total_bytes=2**62, max_file_bytes=2**62))
    dirs: dict[str, Entry] = {"/": Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755)}
    children: dict[str, dict[str, Entry]] = {"/": {}}
    for entry in entries:
        checker.check(entry)
        if entry.path == "/":
            dirs["/"] = entry
            continue
        if not entry.path.startswith("/"):
            raise FlistError(f"{source}: entry path {entry.path!r} is not absolute")
        check_name(entry.name, f"{source}: directory {entry.parent!r}")
        if entry.kind is EntryKind.SPECIAL and stat.S_IFMT(entry.mode) not in _SPECIAL_NAMES:
            raise FlistError(f"{source}: entry {entry.path!r}: cannot write special mode {entry.mode:#o}")
        for ref in entry.blocks:
            if len(ref.id) != _V1_HASH_BYTES or len(ref.key) != _V1_HASH_BYTES:
                raise FlistError(f"{source}: entry {entry.path!r}: v1 blocks need 16-byte ids and keys")
        siblings = children.get(entry.parent)
        if siblings is None:
            raise FlistError(f"{source}: entry {entry.path!r} comes before its directory {entry.parent!r} "
                             "(entries must be given parents first)")
        if entry.name in siblings:
            raise HostileFlist(f"{source}: entry {entry.path!r} appears twice")
        siblings[entry.name] = entry
        if entry.kind is EntryKind.DIR:
            dirs[entry.path] = entry
            children[entry.path] = {}

    schema = _capnp()
    rows: dict[str, bytes] = {}

    def acl_of(entry: Entry) -> str:
        user, group = _owner(entry)
        key = acl_key(user, group, entry.mode, entry.uid, entry.gid)
        if key not in rows:
            aci = schema.ACI.new_message(uname=user, gname=group, mode=stat.S_IMODE(entry.mode),
                                         uid=entry.uid, gid=entry.gid)
            rows[key] = aci.to_bytes()
        return key

    for path, entry in dirs.items():
        parent = dir_key(entry.parent) if path != "/" else dir_key("")
        listing = children[path]
        ordered = sorted((e for e in listing.values() if e.kind is EntryKind.DIR), key=lambda e: e.name)
        ordered += sorted((e for e in listing.values() if e.kind is not EntryKind.DIR), key=lambda e: e.name)
        message = schema.Dir.new_message(
            name="" if path == "/" else entry.name, location=path.strip("/"), parent=parent,
            size=_DIR_SIZE, aclkey=acl_of(entry), modificationTime=entry.mtime & 0xFFFFFFFF,
            creationTime=entry.ctime & 0xFFFFFFFF,
        )
        slots = message.init("contents", len(ordered))
        for slot, child in zip(slots, ordered, strict=True):
            _fill_inode(slot, child, acl_of(child))
        rows[dir_key(path)] = message.to_bytes()
    db.executemany("INSERT INTO entries (key, value) VALUES (?, ?)", sorted(rows.items()))
    db.executemany("INSERT INTO metadata (key, value) VALUES (?, ?)", sorted(tags.items()))


def _add_member(archive: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(info)
    else:
        info.mode, info.size = 0o644, len(data)
        archive.addfile(info, io.BytesIO(data))


def write_v1(path: Path, entries: Iterable[Entry], *, tags: Mapping[str, str] = {},
             routes: Sequence[Route] = ()) -> None:
    """Write a v1 ``.flist`` atomically; byte-identical for the same input (fixed times and owners)."""
    metadata = dict(tags)
    router: str | None = None
    if len(routes) == 1 and (routes[0].start, routes[0].end) == (0, 255) and _backend_json(routes[0].url):
        metadata.setdefault("backend", _backend_json(routes[0].url) or "")
    elif routes:
        router = _router_yaml(routes)
    with tempfile.TemporaryDirectory(prefix="zu-flist-v1-") as work:
        db_path = Path(work) / DB_MEMBER
        db = sqlite3.connect(db_path)
        try:
            db.execute("PRAGMA journal_mode = OFF")
            with db:
                _build_db(db, entries, metadata, str(path))
        finally:
            db.close()
        database = db_path.read_bytes()
    with (
        atomic_writer(path) as out,
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as packed,
        tarfile.open(fileobj=packed, mode="w", format=tarfile.GNU_FORMAT) as archive,
    ):
            _add_member(archive, "./", None)
            _add_member(archive, f"./{DB_MEMBER}", database)
            if router is not None:
                _add_member(archive, f"./{ROUTER_MEMBER}", router.encode())
