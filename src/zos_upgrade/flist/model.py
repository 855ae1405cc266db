"""One model for the entries of both flist formats (SPEC 4.3).

An :class:`Entry` is one node of the tree: a directory, a regular file (with its ordered content
blocks), a symlink (with its target, which is data and never followed) or a special file.
Paths are absolute inside the flist: the root is ``"/"``, a file is ``"/etc/motd"``.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from zos_upgrade.errors import ZosUpgradeError

__all__ = [
    "BLOCK_SIZE", "BlockRef", "Entry", "EntryKind", "FlistError", "FlistTooCostly", "HostileFlist", "Limits",
]

# the fixed block layout (0-flist, rfs): here, not beside the codecs, so code that only needs the
# number (the chunking, the plan) does not load them
BLOCK_SIZE = 512 * 1024


class FlistError(ZosUpgradeError):
    """An flist (or one of its blocks) could not be read, written or trusted."""


class HostileFlist(FlistError):
    """The flist describes something we refuse to materialize (bad names, cycles, lies about sizes...)."""


class FlistTooCostly(HostileFlist):
    """Reading the flist needed more work, time or inflated bytes than its limits allow."""


class EntryKind(StrEnum):
    DIR = "dir"
    FILE = "file"
    LINK = "link"
    SPECIAL = "special"  # socket, block or char device, fifo: see ``Entry.mode``


@dataclass(frozen=True, slots=True)
class BlockRef:
    """One content block: ``id`` names the stored (encrypted) bytes, ``key`` decrypts and checks them.

    v1 blocks have 16-byte ids and keys, v2 blocks 32-byte ones.
    """

    id: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    kind: EntryKind
    mode: int  # the full st_mode, file-type bits included
    size: int = 0
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    ctime: int = 0
    target: str = ""  # symlink target, verbatim
    rdev: int = 0  # device number of a block/char special
    user: str = ""  # owner names where the format keeps them (v1 ACLs)
    group: str = ""
    blocks: tuple[BlockRef, ...] = field(default=())
    # each block's plain length, recorded only by a content-defined (cdc) v2 flist; empty: the
    # fixed layout (every block BLOCK_SIZE, the last shorter), see ``flist.chunking.block_spans``
    lengths: tuple[int, ...] = field(default=())

    @property
    def name(self) -> str:
        return "/" if self.path == "/" else self.path.rsplit("/", 1)[1]

    @property
    def parent(self) -> str:
        if self.path == "/":
            return ""
        head = self.path.rsplit("/", 1)[0]
        return head or "/"

    @property
    def permissions(self) -> int:
        return stat.S_IMODE(self.mode)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds a reader enforces so a hostile flist cannot exhaust the node."""

    max_entries: int = 2_000_000
    max_total_bytes: int = 64 * 1024**3
    max_file_bytes: int = 16 * 1024**3
    max_name_bytes: int = 255
    max_path_bytes: int = 4096
    max_depth: int = 256
    # the metadata database inside a v1 tar.gz (1M entries take a few hundred MB)
    max_metadata_bytes: int = 4 * 1024**3
    # what a v1 tar.gz may inflate to in all, counted while inflating: at most this many bytes, and
    # (when the ratio is not 0) at most ratio x the compressed size, with a 1 MiB floor for tiny ones
    max_inflated_bytes: int = 4 * 1024**3 + 64 * 1024**2
    max_inflate_ratio: int = 0
    # SQLite work any one read of the database (the walk, the tags, the routes) may do, in virtual
    # machine steps per byte of the database file (a recursive view would otherwise spin forever);
    # an honest walk takes well under 100 steps a byte
    max_query_steps_per_byte: int = 100
    # wall time the whole read may take from the open (None: no deadline), on ``clock``
    max_seconds: float | None = None
    clock: Callable[[], float] = time.monotonic
