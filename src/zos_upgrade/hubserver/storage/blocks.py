"""The hub's block folder (``<blocks>/<xx>/<id>``): read and written without following any link.

A ``dir://`` store on a node follows links (its folder is the node's own); the hub's folder takes
what strangers PUT and serves what they GET, so a fan-out folder replaced by a symlink must never
send a write, or open a read, outside it. Every component below the folder is opened relative to
the one above (``dir_fd``) with ``O_NOFOLLOW``: a link is refused by the kernel at the moment of the
open, not by a check that a swap could race.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from zos_upgrade.flist.stores.base import MAX_STORED_BYTES, BlockMissing, StoreError, block_hex
from zos_upgrade.flist.stores.dir import DirStore
from zos_upgrade.fsutil import TEMP_MARK, write_all

__all__ = ["BlockFolder", "LinkInBlockFolder"]

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_HERE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # ELOOP: O_NOFOLLOW met a symlink


class LinkInBlockFolder(StoreError):
    """A fan-out folder of the hub's block folder is a symlink (or not a folder): not written through."""


class BlockFolder(DirStore):
    """The hub's block store: the ``dir://`` layout, never following a link below ``root``."""

    def __init__(self, root: Path) -> None:
        # the configured folder itself may be reached through links (the operator's choice): resolved
        # once here, below it nothing is followed
        super().__init__(Path(os.path.realpath(root)))

    @contextlib.contextmanager
    def _dir(self, fanout: str | None) -> Iterator[int | None]:
        """An fd of the root (``fanout`` None) or of its fan-out folder; None when it is not a plain
        folder (missing, a symlink, a file)."""
        try:
            root_fd = os.open(self.root, _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in _NOT_HERE:
                yield None
                return
            raise
        try:
            if fanout is None:
                yield root_fd
                return
            try:
                fd = os.open(fanout, _DIR_FLAGS, dir_fd=root_fd)
            except OSError as exc:
                if exc.errno not in _NOT_HERE:
                    raise
                if exc.errno != errno.ENOENT:
                    log.warning("block fan-out folder is not a plain folder, not followed",
                                extra={"blocks": str(self.root), "folder": fanout})
                yield None
                return
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(root_fd)

    def open_block(self, hexid: str) -> int | None:
        """A read-only fd of the block file ``hexid`` (sharded, then flat), or None when there is no
        regular file there that is reached without a link."""
        for fanout in (hexid[:2], None):
            with self._dir(fanout) as dir_fd:
                if dir_fd is None:
                    continue
                try:
                    fd = os.open(hexid, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno in _NOT_HERE:
                        continue
                    raise
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    return fd
                os.close(fd)
        return None

    def holds(self, hexid: str) -> bool:
        """Whether the block ``hexid`` is stored (reachable without a link)."""
        fd = self.open_block(hexid)
        if fd is None:
            return False
        os.close(fd)
        return True

    def read_block_file(self, block_id: bytes) -> tuple[bytes, str]:
        hexid = block_hex(block_id)
        try:
            fd = self.open_block(hexid)
        except OSError as exc:
            raise StoreError(f"{self.url}: cannot read block {hexid}: {exc}") from exc
        if fd is None:
            raise BlockMissing(block_id, [self.url])
        try:
            data = os.read(fd, MAX_STORED_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_STORED_BYTES:
            raise StoreError(f"{self.url}: block {hexid} is larger than {MAX_STORED_BYTES} bytes")
        return data, f"{self._prefix}{hexid[:2]}/{hexid}"

    async def has(self, block_id: bytes) -> bool:
        return self.holds(block_hex(block_id))

    def _write(self, block_id: bytes, data: bytes) -> None:
        """Durably store a block as ``<xx>/<id>``: temp file, fsync, rename, fsync the folder; every
        name opened relative to its folder, none through a link."""
        hexid = block_hex(block_id)
        fanout = hexid[:2]
        try:
            with self._dir(None) as root_fd:
                if root_fd is None:
                    raise StoreError(f"{self.url}: block folder {self.root} is not a folder")
                with contextlib.suppress(FileExistsError):
                    os.mkdir(fanout, 0o755, dir_fd=root_fd)
                    os.fsync(root_fd)
                with self._dir(fanout) as dir_fd:
                    if dir_fd is None:
                        raise LinkInBlockFolder(
                            f"{self.url}: {self.root / fanout} is not a plain folder (a symlink?): "
                            f"block {hexid} is not written through it"
                        )
                    self._write_in(dir_fd, hexid, data)
        except OSError as exc:
            raise StoreError(f"{self.url}: cannot write block {hexid}: {exc}") from exc

    @staticmethod
    def _write_in(dir_fd: int, name: str, data: bytes) -> None:
        tmp = f".{name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=dir_fd)
        try:
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
