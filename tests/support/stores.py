"""Block stores for tests: a real ``dir://`` store seen the way a remote one is."""

from __future__ import annotations

import asyncio
from pathlib import Path

from zos_upgrade.flist.stores import DirStore


class AsyncOnlyDirStore(DirStore):
    """A real ``dir://`` store offered only through the async store protocol, as ``http://`` and
    ``zdb://`` stores are (materialize then fetches on the event loop); counts the reads it serves."""

    read_block_file = None  # type: ignore[assignment]  # a None method fails the LocalStore protocol check
    upload_missing = None  # type: ignore[assignment]  # and the SyncUploader one: a pack puts through the loop

    def __init__(self, root: Path, url: str | None = None) -> None:
        super().__init__(root, url)
        self.gets = 0

    async def get(self, block_id: bytes) -> bytes:
        self.gets += 1
        found, _path = await asyncio.to_thread(DirStore.read_block_file, self, block_id)
        return found
