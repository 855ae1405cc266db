"""What the v2 reader and writer share: the schema text rfs creates, the root inode, the mode/kind map."""

from __future__ import annotations

import stat

from zos_upgrade.flist.model import EntryKind

__all__ = ["BLOCK_LENGTH_COLUMN", "INDEXES", "REQUIRED_COLUMNS", "ROOT_INO", "SCHEMA", "TABLES",
           "V2_HASH_BYTES", "kind_of"]

ROOT_INO = 1
V2_HASH_BYTES = 32

# SPEC 4.1, as rfs creates it (same tables, columns, types and index names)
SCHEMA = """
CREATE TABLE inode (
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER,
    name VARCHAR(255),
    size INTEGER,
    uid INTEGER,
    gid INTEGER,
    mode INTEGER,
    rdev INTEGER,
    ctime INTEGER,
    mtime INTEGER
);
CREATE INDEX parents ON inode (parent);
CREATE INDEX names ON inode (name);
CREATE TABLE extra (
    ino INTEGER PRIMARY KEY,
    data VARCHAR(4096)
);
CREATE TABLE block (
    ino INTEGER,
    id VARCHAR(32),
    key VARCHAR(32)
);
CREATE INDEX block_ino ON block (ino);
CREATE TABLE tag (
    key VARCHAR(10) PRIMARY KEY,
    value VARCHAR(255)
);
CREATE TABLE route (
    start INTEGER,
    end INTEGER,
    url VARCHAR(2048)
);
"""

# a content-defined (cdc) flist's one addition to rfs's schema: each block's plain length, which rfs
# cannot use (it assumes fixed 512 KiB blocks) and ignores; fixed flists never have it
BLOCK_LENGTH_COLUMN = "size"

TABLES = ("inode", "extra", "block", "tag", "route")
INDEXES = ("parents", "names", "block_ino")
REQUIRED_COLUMNS = {
    "inode": {"ino", "parent", "name", "size", "uid", "gid", "mode", "rdev", "ctime", "mtime"},
    "extra": {"ino", "data"},
    "block": {"ino", "id", "key"},
}

def kind_of(mode: int) -> EntryKind:
    # masked by hand: stat.S_IFMT raises OverflowError for a mode outside a C unsigned int, and the
    # entry checker refuses such a mode (with its value) right after
    file_type = mode & 0o170000
    if file_type == stat.S_IFDIR:
        return EntryKind.DIR
    if file_type == stat.S_IFREG:
        return EntryKind.FILE
    if file_type == stat.S_IFLNK:
        return EntryKind.LINK
    return EntryKind.SPECIAL
