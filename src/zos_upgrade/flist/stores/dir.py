"""``dir:///path``: blocks as files in a local directory, ``<root>/<hex[0:2]>/<hex>`` (reads fall back
to ``<root>/<hex>``), written atomically; the one store that also reads without the event loop."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import SplitResult, unquote

from zos_upgrade.flist.stores.base import MAX_STORED_BYTES, BlockMissing, StoreError, block_hex
from zos_upgrade.fsutil import atomic_write_bytes, read_at_most

__all__ = ["DirStore", "open_dir_url"]


class DirStore:
    """Blocks as files in a local directory, sharded by the first id byte."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = root
        self.url = url or f"dir://{root}"
        self._prefix = os.path.join(root, "")

    def _paths(self, block_id: bytes) -> tuple[str, str]:
        # plain strings, not Paths: built for every block read, and pathlib costs ~10x as much
        name = block_hex(block_id)
        return f"{self._prefix}{name[:2]}/{name}", f"{self._prefix}{name}"

    def read_block(self, block_id: bytes) -> bytes:
        """The stored bytes of ``block_id``, read synchronously (a local store needs no event loop)."""
        return self.read_block_file(block_id)[0]

    def read_block_file(self, block_id: bytes) -> tuple[bytes, str]:
        """``read_block``, and the file the bytes came from (a cache on the same file system links it)."""
        for path in self._paths(block_id):
            # a short read (never seen on a local file) would only fail verification
            try:
                data = read_at_most(path, MAX_STORED_BYTES)
            except OSError as exc:
                raise StoreError(f"{self.url}: cannot read block file {path}: {exc}") from exc
            if data is None:
                continue
            if len(data) > MAX_STORED_BYTES:
                raise StoreError(f"{self.url}: block file {path} is larger than {MAX_STORED_BYTES} bytes")
            return data, path
        raise BlockMissing(block_id, [self.url])

    def _write(self, block_id: bytes, data: bytes) -> None:
        sharded = Path(self._paths(block_id)[0])
        try:
            sharded.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(sharded, data)
        except OSError as exc:
            raise StoreError(f"{self.url}: cannot write block {block_id.hex()}: {exc}") from exc

    def upload_missing(self, blocks: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        """Write each block not already here, synchronously (the packer's worker threads call it)."""
        uploaded = []
        for block_id, data in blocks:
            missing = not any(os.path.isfile(path) for path in self._paths(block_id))
            if missing:
                self._write(block_id, data)
            uploaded.append(missing)
        return uploaded

    async def get(self, block_id: bytes) -> bytes:
        import asyncio  # here, not at the top: a file-writer process reads blocks without asyncio

        if self.lacks_block(block_id):
            # answered on the loop: a stat that finds nothing costs microseconds, a thread hop up to
            # a GIL switch interval (a packer's dir:// route the node does not have, tried per block)
            raise BlockMissing(block_id, [self.url])
        return await asyncio.to_thread(self.read_block, block_id)

    def lacks_block(self, block_id: bytes) -> bool:
        """True only when nothing stands at either of the block's paths; anything else (an error
        included) is left to the read, which says what is wrong."""
        for path in self._paths(block_id):
            try:
                os.lstat(path)
            except FileNotFoundError:
                continue
            except OSError:
                return False
            return False
        return True

    async def put(self, block_id: bytes, data: bytes) -> None:
        import asyncio

        await asyncio.to_thread(self._write, block_id, data)

    async def has(self, block_id: bytes) -> bool:
        return self.holds_block(block_id)

    def holds_block(self, block_id: bytes) -> bool:
        """``has`` without the event loop."""
        return any(os.path.isfile(path) for path in self._paths(block_id))

    async def aclose(self) -> None:
        return None


def open_dir_url(url: str, parts: SplitResult) -> DirStore:
    """The store ``dir:///absolute/path`` names."""
    if parts.netloc or not parts.path.startswith("/"):
        raise StoreError(f"invalid store URL {url!r}: expected dir:///absolute/path")
    return DirStore(Path(unquote(parts.path)), url)
