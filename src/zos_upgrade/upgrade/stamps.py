"""Node stamps (``<state>/cache/node-stamps.json``): which installed files need not be hashed again.

The drift check (``staging.py``) compares each installed file's blake2b with the manifest's, which
costs reading the whole release. A stamp remembers, for a file hashed before, its digest with what
``lstat`` said of it then: inode, size, mode, mtime and ctime in nanoseconds. While all of these
are unchanged the file's content is too: any write, truncation, rename over it or chmod moves its
ctime, and a ctime cannot be set back (``utime`` sets only mtime and atime; only a clock moved
back could forge it). So a file whose ``lstat`` matches its stamp takes the stamp's digest without
being read; any other is hashed, and stamped again.

A stamp is taken only when the file was unchanged across its hashing (``lstat`` before and after
equal) and its ctime is at least :data:`SETTLED_NS` old: a write in the same clock tick as the stamp
could otherwise leave the ctime unchanged (git's "racy" entries). The file is only a cache: it may
be deleted (everything is hashed again), a damaged or oversized one is ignored, and a failure to
write it is no error.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from zos_upgrade.fsutil import atomic_write_bytes
from zos_upgrade.upgrade.manifest import FileRecord, record_of

__all__ = ["SETTLED_NS", "STAMPS_FILE", "NodeStamps"]

STAMPS_FILE = "node-stamps.json"  # in <state>/cache
SETTLED_NS = 2_000_000_000  # a ctime this old cannot share a clock tick with a later write
_MAX_BYTES = 64 * 1024 * 1024

Stamp = tuple[int, int, int, int, int]  # ino, size, mode, mtime_ns, ctime_ns


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)


class NodeStamps:
    """The stamps of one node, read once, consulted and renewed by one drift check."""

    def __init__(self, path: Path, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self._clock = clock
        self._old = self._load()
        self._new: dict[str, tuple[str, Stamp]] = {}
        self.hashed = 0  # files read this time (no stamp, or a stale one)

    def _load(self) -> dict[str, tuple[str, Stamp]]:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(_MAX_BYTES + 1)
            if len(data) > _MAX_BYTES:
                return {}
            return msgspec.json.decode(data, type=dict[str, tuple[str, tuple[int, int, int, int, int]]])
        except (OSError, msgspec.DecodeError):
            return {}

    def record(self, rel: str, path: Path) -> FileRecord | None:
        """``record_of(path)``, a regular file's digest taken from its stamp while it is valid."""
        try:
            before = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(before.st_mode):
            return record_of(path)
        kept = self._old.get(rel)
        now = _stamp(before)
        if kept is not None and tuple(kept[1]) == now:
            self._new[rel] = (kept[0], now)
            return FileRecord("file", stat.S_IMODE(before.st_mode), before.st_size, kept[0])
        self.hashed += 1
        found = record_of(path)
        with contextlib.suppress(FileNotFoundError):
            after = os.lstat(path)
            settled = self._clock() - after.st_ctime_ns >= SETTLED_NS
            if found is not None and found.kind == "file" and _stamp(after) == now and settled:
                self._new[rel] = (found.digest, now)
        return found

    def save(self) -> None:
        """Keep the stamps of this check (best effort: a cache that cannot be written is no error)."""
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, msgspec.json.encode(self._new), 0o600)
