"""A content-addressed cache of stored (encrypted) blocks: ``<root>/<hex[0:2]>/<hex>``.

The cache is shared by ``materialize`` and the upgrader's Flister. It holds the bytes exactly as a
store holds them, so one cached block serves every release that uses it (delta updates without a
delta format, SPEC 5). Nothing read from it is trusted: ``get`` checks that the bytes hash to their
id and deletes a block that does not, so the caller fetches it again.

A block read from a ``dir://`` store on the same file system is cached as a hard link to the store's
file (``adopt_verified``), not a copy: so the two share one copy on disk, and damage to it shows in
both (and is caught in both by the same verification).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from zos_upgrade.flist.blocks import BlockCorrupt, block_id_matches
from zos_upgrade.flist.model import FlistError
from zos_upgrade.fsutil import read_at_most, temp_sibling, write_all

__all__ = ["BlockCache", "CacheError"]

log = logging.getLogger(__name__)

# More than either pipeline ever stores for one 512 KiB block: a bigger file is not a block of ours.
_MAX_CACHED_BYTES = 512 * 1024 + 512 * 1024 // 6 + 1024
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class CacheError(FlistError):
    """The block cache directory cannot be used (not a directory, not writable...)."""


class BlockCache:
    """Stored blocks on local disk, named by their id, verified on every read."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._prefix = os.path.join(self.root, "")

    def path_for(self, block_id: bytes) -> Path:
        return Path(self._file(block_id))

    def _file(self, block_id: bytes) -> str:
        # a plain string, not a Path: built several times per block, and pathlib costs ~10x as much
        if len(block_id) not in (16, 32):
            raise CacheError(f"a block id must be 16 (v1) or 32 (v2) bytes, got {len(block_id)}")
        name = block_id.hex()
        return f"{self._prefix}{name[:2]}/{name}"

    def get(self, block_id: bytes) -> bytes | None:
        """The stored bytes of ``block_id``, or None when absent (or present but corrupt, then removed)."""
        data = self.peek(block_id)
        if data is None and not self.path_for(block_id).exists():
            return None
        if data is not None and block_id_matches(block_id, data):
            return data
        log.warning("corrupt cached block removed", extra={"block": block_id.hex(), "cache": str(self.root)})
        self.discard(block_id)
        return None

    def peek(self, block_id: bytes) -> bytes | None:
        """The cached bytes of ``block_id`` WITHOUT checking them, or None.

        For callers that verify anyway (``decrypt_block`` checks the id): they must call ``discard``
        when the bytes fail, exactly as ``get`` does itself.
        """
        path = self._file(block_id)
        # a short read (never seen on a local file) would only fail verification
        try:
            data = read_at_most(path, _MAX_CACHED_BYTES)
        except OSError as exc:
            raise CacheError(f"block cache {self.root}: cannot read {path}: {exc}") from exc
        return data if data is not None and len(data) <= _MAX_CACHED_BYTES else None

    def discard(self, block_id: bytes) -> None:
        """Remove a cached block (one that failed verification)."""
        with contextlib.suppress(FileNotFoundError):
            self.path_for(block_id).unlink()

    def has(self, block_id: bytes) -> bool:
        """True when a file for ``block_id`` exists (not verified: ``get`` verifies)."""
        return os.path.isfile(self._file(block_id))

    def put(self, block_id: bytes, data: bytes) -> None:
        """Store ``data`` under ``block_id`` atomically; refuses bytes that are not that block."""
        if not block_id_matches(block_id, data):
            raise BlockCorrupt(f"block {block_id.hex()}: refusing to cache bytes that do not hash to its id")
        self.put_verified(block_id, data)

    def adopt_verified(self, block_id: bytes, data: bytes, source: str | None) -> None:
        """``put_verified``, by a hard link to ``source`` (the store's file ``data`` was just read
        from) when it can: no copy, no second write-back, half the disk. Blocks are immutable and
        named by their content, and every read from the cache verifies the bytes again, so a file
        changed behind our back is caught there like any corruption. A link across file systems, or
        one the system refuses (protected hardlinks), falls back to writing ``data``."""
        if source is not None:
            path = self._file(block_id)
            try:
                try:
                    os.link(source, path)
                except FileNotFoundError:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    os.link(source, path)
                return
            except FileExistsError:
                return  # cached meanwhile (by another process): the same content by its name
            except OSError:
                pass  # EXDEV, EPERM, EMLINK...: write a copy
        self.put_verified(block_id, data)

    def put_verified(self, block_id: bytes, data: bytes) -> None:
        """``put`` for bytes the caller has just checked against ``block_id`` (saves hashing twice)."""
        path = self.path_for(block_id)
        tmp = temp_sibling(path)
        # Raw os.open/os.write, and the shard directory made only when the open says it is missing:
        # creating files is what a cold materialize spends most of its cache time on, so no syscall
        # more than open, write, close and rename per block.
        try:
            try:
                fd = os.open(tmp, _CREATE, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, _CREATE, 0o644)
            try:
                # No fsync on purpose: a block torn by a crash fails verification on the next read and
                # is fetched again, so durability would only cost time. The rename keeps readers from
                # ever seeing a half-written file.
                write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise CacheError(f"block cache {self.root}: cannot write block {block_id.hex()}: {exc}") from exc
