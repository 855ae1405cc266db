"""What the reader and the writer of v1 share: the capnp schema, the record keys, the field constants.

Directories are keyed by ``blake2b(relative path, 16)``; each holds a ``Dir`` message listing its
``Inode`` children. ACLs (owner, group, permission bits) are separate messages keyed by
``blake2b(description, 8)``. Values are unpacked capnp messages (SPEC 4.2).
"""

from __future__ import annotations

import hashlib
import stat
from importlib import resources
from typing import Any

import capnp

__all__ = [
    "BLOCK_SIZE_FIELD",
    "DIR_SIZE",
    "HASH_BYTES",
    "SPECIAL_NAMES",
    "SPECIAL_TYPES",
    "acl_key",
    "dir_key",
    "load_schema",
    "traversal_limit",
]

HASH_BYTES = 16  # a v1 block's hash and key
DIR_SIZE = 4096
BLOCK_SIZE_FIELD = 128  # 128 x 4 KiB = 512 KiB, as zflist writes it

SPECIAL_TYPES = {
    "socket": stat.S_IFSOCK, "block": stat.S_IFBLK, "chardev": stat.S_IFCHR, "fifopipe": stat.S_IFIFO,
}
SPECIAL_NAMES = {v: k for k, v in SPECIAL_TYPES.items()}

_schema: Any = None


def load_schema() -> Any:
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


def traversal_limit(message: bytes) -> int:
    """How many words reading ``message`` may traverse."""
    # a capnp message can point at the same bytes many times; never read more than a few times its size
    return max(len(message) // 8 * 4, 1 << 12)
