"""A generator of hostile flists: every case of SPEC 4.3 and of the flist issue's bad-input list.

Each :class:`BadFlist` writes one hostile flist (and, for the block cases, the blocks it points at)
in a given format, and says which typed error a reader or ``materialize`` must raise and a fragment
of its message. The project's writers refuse to write such files, so the hostile v1 archives are
built here with a raw capnp writer, and the hostile v2 files by editing a valid database with SQL.

Contents are random on every build, so a block cache that served an earlier case never hides a
corrupted block of the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import os
import sqlite3
import stat
import struct
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cramjam
import xxtea
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.flist import (
    BLOCK_SIZE,
    BlockCorrupt,
    BlockMissing,
    BlockRef,
    Entry,
    EntryKind,
    FlistError,
    FlistTooCostly,
    HostileFlist,
    Limits,
    encrypt_block,
    write_flist,
)
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.flist.v1 import DB_MEMBER, dir_key
from zos_upgrade.flist.v1 import load_schema as _capnp

DIR = stat.S_IFDIR | 0o755
FILE = stat.S_IFREG | 0o644
LINK = stat.S_IFLNK | 0o777
Format = str  # "v1" or "v2"
SUFFIX = {"v1": ".flist", "v2": ".fl"}


# --------------------------------------------------------------------------------------- blocks


def put_block(store: DirStore, plain: bytes, fmt: Format) -> BlockRef:
    """Encrypt ``plain`` the format's way and keep it in ``store``; its ref."""
    ref, stored = encrypt_block(plain, "v1" if fmt == "v1" else "v2")
    asyncio.run(store.put(ref.id, stored))
    return ref


def block_path(store: DirStore, ref: BlockRef) -> Path:
    return store.root / ref.id.hex()[:2] / ref.id.hex()


def bomb_block(store: DirStore, fmt: Format, inflated: int = 2 * BLOCK_SIZE) -> BlockRef:
    """A correctly keyed and addressed block whose snappy data inflates past the 512 KiB block size.

    Its id and key are honest, so only the inflate check can stop it.
    """
    plain = bytes(inflated)
    compressed = bytes(cramjam.snappy.compress_raw(plain))
    if fmt == "v1":
        key = hashlib.blake2b(plain, digest_size=16).digest()
        padded = compressed + b"\0" * (-len(compressed) % 4) + struct.pack("<I", len(compressed))
        stored = bytes(xxtea.encrypt(padded, key, padding=False))
        ref = BlockRef(hashlib.blake2b(stored, digest_size=16).digest(), key)
    else:
        key = hashlib.blake2b(plain, digest_size=32).digest()
        stored = AESGCM(key).encrypt(key[:12], compressed, None)
        ref = BlockRef(hashlib.blake2b(stored, digest_size=32).digest(), key)
    asyncio.run(store.put(ref.id, stored))
    return ref


def fresh(size: int = 64) -> bytes:
    """Random text content: never in any cache."""
    return os.urandom(size // 2 + 1).hex().encode()[:size]


# ------------------------------------------------------------------------------ a valid release


def base_entries(store: DirStore, fmt: Format, content: bytes | None = None,
                 blocks: Sequence[BlockRef] | None = None, size: int | None = None) -> list[Entry]:
    """``/etc/motd`` (the file the cases lie about), ``/opt`` and a symlink ``/bin``."""
    content = fresh() if content is None else content
    refs = tuple(blocks) if blocks is not None else (put_block(store, content, fmt),)
    return [
        Entry("/", EntryKind.DIR, DIR),
        Entry("/etc", EntryKind.DIR, DIR),
        Entry("/opt", EntryKind.DIR, DIR),
        Entry("/bin", EntryKind.LINK, LINK, target="opt"),
        Entry("/etc/motd", EntryKind.FILE, FILE, size=len(content) if size is None else size, blocks=refs),
    ]


def write_base(out: Path, store: DirStore, **kwargs: object) -> None:
    fmt = "v1" if out.suffix == ".flist" else "v2"
    write_flist(out, base_entries(store, fmt, **kwargs))  # type: ignore[arg-type]


# ------------------------------------------------------------------------- raw v1 (capnp) writer


@dataclass
class RawInode:
    """One child in a raw v1 ``Dir`` message: whatever the test wants, checked by nobody."""

    name: str
    kind: str  # dir | file | link | special
    size: int = 0
    blocks: Sequence[BlockRef] = ()
    target: str = ""
    key: str | None = None  # dir: the entries-table key of its Dir message (default: by path)


@dataclass
class Member:
    """One extra tar member: a regular file with ``data``, or a link when ``linkname`` is set."""

    name: str
    data: bytes = b""
    linkname: str = ""


def _db_bytes(dirs: dict[str, list[RawInode]], keys: dict[str, str]) -> bytes:
    schema = _capnp()
    with tempfile.TemporaryDirectory(prefix="zu-bad-v1-") as work:
        path = Path(work) / DB_MEMBER
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE entries (key VARCHAR(64) PRIMARY KEY, value BLOB)")
            db.execute("CREATE TABLE metadata (key VARCHAR(64) PRIMARY KEY, value TEXT)")
            for path_, children in dirs.items():
                message = schema.Dir.new_message(name=path_.rsplit("/", 1)[-1], location=path_.strip("/"),
                                                 parent="", size=4096)
                slots = message.init("contents", len(children))
                for slot, child in zip(slots, children, strict=True):
                    slot.name = child.name
                    slot.size = child.size
                    if child.kind == "dir":
                        child_path = ("" if path_ == "/" else path_) + "/" + child.name
                        slot.attributes.init("dir").key = child.key or dir_key(child_path)
                    elif child.kind == "file":
                        file = slot.attributes.init("file")
                        file.blockSize = 128
                        refs = file.init("blocks", len(child.blocks))
                        for ref_slot, ref in zip(refs, child.blocks, strict=True):
                            ref_slot.hash, ref_slot.key = ref.id, ref.key
                    elif child.kind == "link":
                        slot.attributes.init("link").target = child.target
                    else:
                        slot.attributes.init("special").type = "fifopipe"
                db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?)",
                           (keys.get(path_, dir_key(path_)), message.to_bytes()))
            db.commit()
        return path.read_bytes()


def tar_gz(out: Path, members: Sequence[tuple[str, bytes | None, str]]) -> None:
    """A tar.gz of (name, data or None for a directory, symlink target or '') members."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data, linkname in members:
            info = tarfile.TarInfo(name)
            if linkname:
                info.type, info.linkname = tarfile.SYMTYPE, linkname
                archive.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
    out.write_bytes(raw.getvalue())


def raw_v1(out: Path, dirs: dict[str, list[RawInode]], *, keys: dict[str, str] | None = None,
           extra: Sequence[Member] = (), db: bytes | None = None) -> None:
    """A v1 archive whose directories hold exactly ``dirs`` (path -> children), nothing validated."""
    database = _db_bytes(dirs, keys or {}) if db is None else db
    members: list[tuple[str, bytes | None, str]] = [("./", None, ""), (f"./{DB_MEMBER}", database, "")]
    members += [(m.name, m.data, m.linkname) for m in extra]
    tar_gz(out, members)


RawTree = dict[str, list[RawInode]]


def v1_tree(store: DirStore, content: bytes | None = None, *, motd: RawInode | None = None,
            root_extra: Sequence[RawInode] = (), etc_extra: Sequence[RawInode] = ()) -> RawTree:
    """The raw v1 form of :func:`base_entries`, with the cases' additions."""
    content = fresh() if content is None else content
    motd = motd or RawInode("motd", "file", len(content), (put_block(store, content, "v1"),))
    return {
        "/": [RawInode("etc", "dir"), RawInode("opt", "dir"), RawInode("bin", "link", target="opt"),
              *root_extra],
        "/etc": [motd, *etc_extra],
        "/opt": [],
    }


# ----------------------------------------------------------------------------- raw v2 (SQL) edits


Statement = tuple[str, tuple[object, ...]]


def edit_v2(out: Path, store: DirStore, *statements: Statement, **kwargs: object) -> None:
    """Write the valid base release as v2, then run ``statements`` on its database."""
    write_base(out, store, **kwargs)
    with contextlib.closing(sqlite3.connect(out)) as db:
        for sql, args in statements:
            db.execute(sql, args)
        db.commit()


def ino(name: str) -> str:
    return f"(SELECT ino FROM inode WHERE name = '{name}')"


def insert_inode(parent: str, name: str, mode: int, *, ino_value: int | None = None) -> Statement:
    return ("INSERT INTO inode (ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime) "
            f"VALUES (?, {parent}, ?, 0, 0, 0, ?, 0, 0, 0)", (ino_value, name, mode))


def corrupt_sqlite(data: bytes) -> bytes:
    """Keep the 100-byte header (the magic still says SQLite), overwrite every page after it."""
    return data[:100] + b"\xa5" * (len(data) - 100)


# ------------------------------------------------------------------------------------ the cases


Builder = Callable[[Path, DirStore], None]


@dataclass(frozen=True)
class BadFlist:
    name: str
    build: dict[Format, Builder]  # per format the format allows
    error: type[ZosUpgradeError]
    fragment: str | dict[Format, str]  # a message fragment (per format where they differ)
    limits: Limits | None = None  # None: the default limits (the case also runs through the upgrader)
    e2e: bool = True
    note: str = field(default="", compare=False)

    def formats(self) -> list[Format]:
        return list(self.build)

    def fragment_for(self, fmt: Format) -> str:
        return self.fragment if isinstance(self.fragment, str) else self.fragment[fmt]


def _bad_name_v1(name: str) -> Builder:
    def build(out: Path, store: DirStore) -> None:
        raw_v1(out, v1_tree(store, etc_extra=[RawInode(name, "file")]))
    return build


def _bad_name_v2(name: str) -> Builder:
    def build(out: Path, store: DirStore) -> None:
        edit_v2(out, store, ("UPDATE inode SET name = ? WHERE name = 'motd'", (name,)))
    return build


def _name_case(case: str, name: str) -> BadFlist:
    return BadFlist(f"name-{case}", {"v1": _bad_name_v1(name), "v2": _bad_name_v2(name)}, HostileFlist,
                    "is not allowed")


def _duplicate_v1(out: Path, store: DirStore) -> None:
    raw_v1(out, v1_tree(store, etc_extra=[RawInode("motd", "link", target="/etc/shadow")]))


def _duplicate_v2(out: Path, store: DirStore) -> None:
    edit_v2(out, store, insert_inode(ino("etc"), "motd", LINK))


def _cycle_v1(out: Path, store: DirStore) -> None:
    # /etc/loop is a directory whose record is the root's own record
    raw_v1(out, v1_tree(store, etc_extra=[RawInode("loop", "dir", key=dir_key(""))]))


def _cycle_v2(out: Path, store: DirStore) -> None:
    # two directories that are each other's parent: unreachable from the root, and a loop
    edit_v2(out, store, insert_inode("101", "a", DIR, ino_value=100),
            insert_inode("100", "b", DIR, ino_value=101))


def _through_link_v1(out: Path, store: DirStore) -> None:
    # v1 paths come from the walk, so "a file through the link" is a link and a directory of one name
    tree = v1_tree(store, root_extra=[RawInode("sneaky", "link", target="/etc"), RawInode("sneaky", "dir")])
    tree["/sneaky"] = [RawInode("passwd", "file")]
    raw_v1(out, tree)


def _through_link_v2(out: Path, store: DirStore) -> None:
    edit_v2(out, store, insert_inode(ino("bin"), "passwd", FILE))


def _size_blocks_v1(out: Path, store: DirStore) -> None:
    content = fresh()
    motd = RawInode("motd", "file", 10 * BLOCK_SIZE, (put_block(store, content, "v1"),))
    raw_v1(out, v1_tree(store, content, motd=motd))


def _size_blocks_v2(out: Path, store: DirStore) -> None:
    edit_v2(out, store, ("UPDATE inode SET size = ? WHERE name = 'motd'", (10 * BLOCK_SIZE,)))


def _size_lie(out: Path, store: DirStore) -> None:
    write_base(out, store, content=fresh(100), size=3)  # one block either way, but it holds 100 bytes


def _blocks_on_dir_v2(out: Path, store: DirStore) -> None:
    ref = put_block(store, fresh(), "v2")
    edit_v2(out, store, (f"INSERT INTO block (ino, id, key) VALUES ({ino('etc')}, ?, ?)", (ref.id, ref.key)))


def _key_mismatch(out: Path, store: DirStore) -> None:
    fmt = "v1" if out.suffix == ".flist" else "v2"
    content = fresh()
    good, other = put_block(store, content, fmt), put_block(store, fresh(), fmt)
    write_base(out, store, content=content, blocks=[BlockRef(good.id, other.key)])


def _id_mismatch(out: Path, store: DirStore) -> None:
    # the store holds another block's bytes under this id
    fmt = "v1" if out.suffix == ".flist" else "v2"
    content = fresh()
    good, other = put_block(store, content, fmt), put_block(store, fresh(), fmt)
    block_path(store, good).write_bytes(block_path(store, other).read_bytes())
    write_base(out, store, content=content, blocks=[good])


def _block_edit(edit: Callable[[bytes], bytes | None]) -> Builder:
    def build(out: Path, store: DirStore) -> None:
        fmt = "v1" if out.suffix == ".flist" else "v2"
        content = fresh(5000)
        ref = put_block(store, content, fmt)
        path = block_path(store, ref)
        changed = edit(path.read_bytes())
        if changed is None:
            path.unlink()
        else:
            path.write_bytes(changed)
        write_base(out, store, content=content, blocks=[ref])
    return build


def _flip(data: bytes) -> bytes:
    return data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]


def _bomb(out: Path, store: DirStore) -> None:
    fmt = "v1" if out.suffix == ".flist" else "v2"
    write_base(out, store, content=b"", blocks=[bomb_block(store, fmt)], size=BLOCK_SIZE)


def _corrupt_db_v1(out: Path, store: DirStore) -> None:
    with tempfile.TemporaryDirectory(prefix="zu-bad-v1-") as work:
        good = Path(work) / "good.flist"
        write_base(good, store)
        with tarfile.open(good, "r:gz") as archive:
            handle = archive.extractfile(f"./{DB_MEMBER}")
            assert handle is not None
            database = handle.read()
    raw_v1(out, {}, db=corrupt_sqlite(database))


def _corrupt_db_v2(out: Path, store: DirStore) -> None:
    write_base(out, store)
    out.write_bytes(corrupt_sqlite(out.read_bytes()))


def _members(*extra: Member) -> Builder:
    def build(out: Path, store: DirStore) -> None:
        raw_v1(out, v1_tree(store), extra=extra)
    return build


def _db_as_link(out: Path, store: DirStore) -> None:
    tar_gz(out, [("./", None, ""), (f"./{DB_MEMBER}", None, "/etc/shadow")])


def _metadata_bomb(out: Path, store: DirStore) -> None:
    # 8 MiB of zeros packs to a few KiB: a gzip bomb for the metadata limit
    tar_gz(out, [("./", None, ""), (f"./{DB_MEMBER}", bytes(8 * 1024 * 1024), "")])


def _many_entries(out: Path, store: DirStore) -> None:
    entries = [Entry("/", EntryKind.DIR, DIR)] + [Entry(f"/d{i}", EntryKind.DIR, DIR) for i in range(150)]
    write_flist(out, entries)


def _many_bytes(out: Path, store: DirStore) -> None:
    fmt = "v1" if out.suffix == ".flist" else "v2"
    ref = put_block(store, fresh(), fmt)  # never fetched: the sizes alone are refused
    entries = [Entry("/", EntryKind.DIR, DIR)] + [
        Entry(f"/f{i}", EntryKind.FILE, FILE, size=BLOCK_SIZE, blocks=(ref,)) for i in range(5)
    ]
    write_flist(out, entries)


def _huge_file(out: Path, store: DirStore) -> None:
    # past the default 16 GiB file limit, with exactly the block count that size needs
    fmt = "v1" if out.suffix == ".flist" else "v2"
    size = Limits().max_file_bytes + 1
    ref = put_block(store, fresh(), fmt)
    count = -(-size // BLOCK_SIZE)
    write_base(out, store, blocks=[ref] * count, size=size)


def _not_an_flist(out: Path, store: DirStore) -> None:
    out.write_bytes(b"<html><body>502 Bad Gateway</body></html>\n")


# a database is code: views, triggers, virtual tables and computed columns run while it is read
_COLUMNS = "ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime"
_ENDLESS_INODE = (
    f"CREATE VIEW inode AS WITH RECURSIVE r({_COLUMNS}) AS (SELECT 1, 0, '/', 0, 0, 0, {DIR}, 0, 0, 0 "
    f"UNION ALL SELECT ino + 1, 1, 'x' || ino, 0, 0, 0, {FILE}, 0, 0, 0 FROM r) SELECT * FROM r"
)
_ENDLESS_ENTRIES = (
    "CREATE VIEW entries(key, value) AS WITH RECURSIVE r(key, value) AS (SELECT 'a', x'00' "
    "UNION ALL SELECT key || 'a', value FROM r) SELECT * FROM r"
)
_SQL_EDITS: dict[str, dict[Format, tuple[str, ...]]] = {
    "recursive-view": {"v1": ("DROP TABLE entries", _ENDLESS_ENTRIES),
                       "v2": ("DROP TABLE inode", _ENDLESS_INODE)},
    "trigger": {"v1": ("CREATE TRIGGER t AFTER INSERT ON metadata BEGIN SELECT 1; END",),
                "v2": ("CREATE TRIGGER t AFTER INSERT ON tag BEGIN SELECT 1; END",)},
    "virtual-table": {"v1": ("DROP TABLE metadata", "CREATE VIRTUAL TABLE metadata USING fts5(key, value)"),
                      "v2": ("DROP TABLE route", "CREATE VIRTUAL TABLE route USING fts5(start, end, url)")},
    "unknown-table": {"v1": ("CREATE TABLE evil (x)",), "v2": ("CREATE TABLE evil (x)",)},
    "computed-column": {
        fmt: (f"ALTER TABLE {table} ADD COLUMN g INTEGER GENERATED ALWAYS AS "
              "(length(zeroblob(1000000000))) VIRTUAL",)
        for fmt, table in (("v1", "entries"), ("v2", "inode"))
    },
}


def _run_sql(db_path: Path, statements: Sequence[str]) -> None:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        for sql in statements:
            db.execute(sql)
        db.commit()


def _sql_edit(kind: str) -> dict[Format, Builder]:
    def v1(out: Path, store: DirStore) -> None:
        with tempfile.TemporaryDirectory(prefix="zu-bad-v1-") as work:
            db_path = Path(work) / DB_MEMBER
            db_path.write_bytes(_db_bytes(v1_tree(store), {}))
            _run_sql(db_path, _SQL_EDITS[kind]["v1"])
            raw_v1(out, {}, db=db_path.read_bytes())

    def v2(out: Path, store: DirStore) -> None:
        write_base(out, store)
        _run_sql(out, _SQL_EDITS[kind]["v2"])

    return {"v1": v1, "v2": v2}


def _inflate_bomb(out: Path, store: DirStore) -> None:
    # 16 MiB of zeros in a database member packs to ~16 KiB: ~1000:1
    tar_gz(out, [("./", None, ""), (f"./{DB_MEMBER}", bytes(16 * 1024 * 1024), "")])


def _both(builder: Builder) -> dict[Format, Builder]:
    return {"v1": builder, "v2": builder}


SMALL = Limits(max_entries=100, max_total_bytes=2 * BLOCK_SIZE, max_metadata_bytes=1024 * 1024)

CASES: list[BadFlist] = [
    _name_case("slash", "a/b"),
    _name_case("dotdot", ".."),
    _name_case("dot", "."),
    _name_case("nul", "pass\0wd"),
    _name_case("empty", ""),
    BadFlist("duplicate-name", {"v1": _duplicate_v1, "v2": _duplicate_v2}, HostileFlist, "duplicate name"),
    BadFlist("directory-cycle", {"v1": _cycle_v1, "v2": _cycle_v2}, HostileFlist, "cycle"),
    BadFlist("file-through-symlink", {"v1": _through_link_v1, "v2": _through_link_v2}, HostileFlist,
             {"v1": "duplicate name", "v2": "its parent is not a directory"}),
    BadFlist("size-disagrees-with-block-count", {"v1": _size_blocks_v1, "v2": _size_blocks_v2}, HostileFlist,
             "blocks of 524288 bytes, the flist lists 1"),
    BadFlist("size-disagrees-with-block-content", _both(_size_lie), HostileFlist, "more than the 3 bytes"),
    BadFlist("blocks-on-a-directory", {"v2": _blocks_on_dir_v2}, HostileFlist,
             "a non-file entry carries content blocks", note="v1: a capnp union cannot say this"),
    BadFlist("block-key-mismatch", _both(_key_mismatch), BlockCorrupt, "block 0"),
    BadFlist("block-id-mismatch", _both(_id_mismatch), BlockCorrupt, "not to the block id"),
    BadFlist("block-corrupted", _both(_block_edit(_flip)), BlockCorrupt, "not to the block id"),
    BadFlist("block-truncated", _both(_block_edit(lambda d: d[:-100])), BlockCorrupt, "not to the block id"),
    BadFlist("block-missing", _both(_block_edit(lambda d: None)), BlockMissing, "is missing"),
    BadFlist("decompression-bomb", _both(_bomb), BlockCorrupt, "more than the 524288-byte block size"),
    BadFlist("corrupted-sqlite", {"v1": _corrupt_db_v1, "v2": _corrupt_db_v2}, FlistError, "corrupt"),
    BadFlist("tar-extra-member", {"v1": _members(Member("./run.sh", b"#!/bin/sh\nrm -rf /\n"))}, HostileFlist,
             "unexpected member"),
    BadFlist("tar-traversal-member", {"v1": _members(Member("../../etc/cron.d/evil", b"* * * * root sh\n"))},
             HostileFlist, "path traversal"),
    BadFlist("tar-absolute-member", {"v1": _members(Member("/etc/cron.d/evil", b"x"))}, HostileFlist,
             "path traversal"),
    BadFlist("tar-db-is-a-symlink", {"v1": _db_as_link}, HostileFlist, "must be a regular file"),
    BadFlist("tar-db-twice", {"v1": _members(Member(f"./{DB_MEMBER}", b"SQLite format 3\0"))}, HostileFlist,
             "appears twice"),
    BadFlist("metadata-gzip-bomb", {"v1": _metadata_bomb}, HostileFlist, "more than the 1048576 allowed",
             limits=SMALL),
    BadFlist("too-many-entries", _both(_many_entries), HostileFlist,
             {"v1": "more than 100 entries", "v2": "more than the 100 allowed"}, limits=SMALL),
    BadFlist("too-many-bytes", _both(_many_bytes), HostileFlist, "more than 1048576 bytes", limits=SMALL),
    BadFlist("file-over-the-default-limit", _both(_huge_file), HostileFlist, "file limit"),
    BadFlist("not-an-flist", _both(_not_an_flist), FlistError, "not an flist"),
    BadFlist("sqlite-recursive-view", _sql_edit("recursive-view"), HostileFlist, "database holds view"),
    BadFlist("sqlite-trigger", _sql_edit("trigger"), HostileFlist, "database holds trigger 't'"),
    BadFlist("sqlite-virtual-table", _sql_edit("virtual-table"), HostileFlist,
             {"v1": "database holds table 'metadata", "v2": "database holds table 'route"}),
    BadFlist("sqlite-unknown-table", _sql_edit("unknown-table"), HostileFlist, "database holds table 'evil'"),
    BadFlist("sqlite-computed-column", _sql_edit("computed-column"), HostileFlist,
             "has computed or hidden columns ['g']"),
    BadFlist("inflate-ratio-bomb", {"v1": _inflate_bomb}, FlistTooCostly,
             "inflates to more than 1048576 bytes",
             limits=Limits(max_inflate_ratio=20)),
    BadFlist("inflate-cap-bomb", {"v1": _inflate_bomb}, FlistTooCostly,
             "inflates to more than 3145728 bytes",
             limits=Limits(max_inflated_bytes=3 * 1024 * 1024)),
]


def params() -> list[tuple[BadFlist, Format]]:
    """Every (case, format) pair, for ``pytest.mark.parametrize``."""
    return [(case, fmt) for case in CASES for fmt in case.formats()]


def param_id(value: object) -> str:
    return value.name if isinstance(value, BadFlist) else str(value)
