"""Blocks the node already has, read from its installed files and verified before use.

An upgrade's new files mostly repeat blocks of the files installed now (an unchanged block of a
changed file, a file moved, a shared library). The installed manifest knows, for each installed
file, the keys of its blocks in file order and their plain lengths, so where each block lies in the
node file (offset = the running sum of the lengths before it: blocks may be of variable length).
:class:`NodeBlocks` serves a block's plain bytes from there instead of the store.

Every block read is verified: ``blake2b(plain, digest_size=len(key)) == key`` (the flist format's
definition of the key, ``blocks.py``), so a node file that drifted since its install is never a
source: the mismatch is logged, the key is forgotten, and the caller falls back to the cache and
the store. Reading never leaves the node root: the file is reached from an fd of the root one
component at a time with ``O_NOFOLLOW`` (a symlink anywhere on the way, or as the file itself, is
refused), as ``filewrite`` writes. Blocks read here are not added to the block cache: the node's
files are the copy.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from zos_upgrade.flist.model import BlockRef

__all__ = ["BlockPlace", "NodeBlocks"]

log = logging.getLogger(__name__)

_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a fifo planted at the path must not hang the open (it is refused just after)
_FILE_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_MAX_OPEN = 32  # node files kept open at once (a big changed file reads many blocks of one file)


@dataclass(frozen=True, slots=True)
class BlockPlace:
    """Where a block's plain bytes lie on the node: a path relative to the root, an offset, a length."""

    rel: str
    offset: int
    length: int


class NodeBlocks:
    """A verified block source over the node's installed files (thread-safe)."""

    def __init__(self, root: Path, places: dict[bytes, BlockPlace]) -> None:
        self.root = Path(root)
        self._places = dict(places)
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}
        self.used = 0     # blocks served from node files
        self.refused = 0  # blocks whose node bytes failed verification (or could not be read)

    @classmethod
    def index(cls, root: Path, files: Iterable[tuple[str, list[tuple[bytes, int]]]]) -> NodeBlocks:
        """From ``(rel, [(key, length), ...])`` per installed file: each key's first place."""
        places: dict[bytes, BlockPlace] = {}
        for rel, blocks in files:
            offset = 0
            for key, length in blocks:
                places.setdefault(key, BlockPlace(rel, offset, length))
                offset += length
        return cls(root, places)

    def __len__(self) -> int:
        return len(self._places)

    def has(self, ref: BlockRef) -> bool:
        return ref.key in self._places

    def plain(self, ref: BlockRef) -> bytes | None:
        """The verified plain bytes of ``ref`` from the node, or None (not there, unreadable, drifted)."""
        with self._lock:
            place = self._places.get(ref.key)
        if place is None:
            return None
        try:
            data = self._read(place)
        except OSError as exc:
            self._forget(ref.key, f"cannot be read: {exc}", place)
            return None
        import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

        if len(data) != place.length or hashlib.blake2b(data, digest_size=len(ref.key)).digest() != ref.key:
            self._forget(ref.key, "its bytes no longer match the block's key (the file drifted)", place)
            return None
        with self._lock:
            self.used += 1
        return data

    def _forget(self, key: bytes, why: str, place: BlockPlace) -> None:
        log.warning("node block not used; it comes from the store instead",
                    extra={"path": "/" + place.rel, "offset": place.offset, "why": why})
        with self._lock:
            self._places.pop(key, None)
            self.refused += 1

    def _read(self, place: BlockPlace) -> bytes:
        fd = self._open(place.rel)
        return os.pread(fd, place.length, place.offset)

    def _open(self, rel: str) -> int:
        with self._lock:
            fd = self._fds.get(rel)
            if fd is not None:
                return fd
        fd = _open_below(self.root, rel)
        with self._lock:
            if rel in self._fds:  # another thread opened it meanwhile
                os.close(fd)
                return self._fds[rel]
            if len(self._fds) >= _MAX_OPEN:
                os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[rel] = fd
            return fd

    def close(self) -> None:
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _open_below(root: Path, rel: str) -> int:
    """An fd of the regular file ``rel`` under ``root``, every component opened with O_NOFOLLOW."""
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise OSError(errno.EINVAL, f"not a path below the node root: {rel!r}")
    fd = os.open(root, _DIR_OPEN)
    try:
        for name in parts[:-1]:
            nxt = os.open(name, _DIR_OPEN, dir_fd=fd)
            os.close(fd)
            fd = nxt
        out = os.open(parts[-1], _FILE_OPEN, dir_fd=fd)
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(out).st_mode):
            raise OSError(errno.EINVAL, f"/{rel} is not a regular file")
    except BaseException:
        os.close(out)
        raise
    return out
