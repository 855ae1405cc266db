"""The contract every block store keeps: the ``BlockStore`` protocol, its errors, the bound on a block.

A store is transport only: it moves opaque bytes under an id. It does not decrypt or verify them;
:mod:`zos_upgrade.flist.blocks` does that, so a lying store is caught no matter which one answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from zos_upgrade.flist.blocks import BLOCK_SIZE
from zos_upgrade.flist.model import FlistError

__all__ = [
    "MAX_STORED_BYTES", "BlockMissing", "BlockStore", "Fetched", "LocalStore", "StoreError", "SyncUploader",
    "block_hex", "get_each", "get_many",
]

# The largest stored block either pipeline can produce (snappy worst case + framing/tag), rounded up:
# a store answering more than this is not sending one of our blocks.
MAX_STORED_BYTES = BLOCK_SIZE + BLOCK_SIZE // 6 + 1024


class BlockMissing(FlistError):
    """No store that was tried holds the block."""

    def __init__(self, block_id: bytes, stores: Sequence[str]) -> None:
        tried = ", ".join(stores) if stores else "no store (no route covers this id)"
        super().__init__(f"block {block_id.hex()} is missing; tried: {tried}")
        self.block_id = block_id
        self.stores = tuple(stores)


class StoreError(FlistError):
    """A store URL is invalid, a store is unreachable (after retries), or it refused a write."""


@runtime_checkable
class BlockStore(Protocol):
    url: str

    async def get(self, block_id: bytes) -> bytes: ...

    async def put(self, block_id: bytes, data: bytes) -> None: ...

    async def has(self, block_id: bytes) -> bool: ...

    async def aclose(self) -> None: ...


Fetched = dict[bytes, "bytes | Exception"]  # block id -> its stored bytes, or why it could not be had


async def get_many(store: BlockStore, block_ids: Sequence[bytes]) -> Fetched:
    """Each of ``block_ids`` from ``store`` (BlockMissing for one it lacks), in as few requests as
    the store allows: its own ``get_many`` where it has one (a batch GET), else one ``get`` each."""
    many = getattr(store, "get_many", None)
    if many is not None:
        found: Fetched = await many(block_ids)
        return found
    return await get_each(store.get, block_ids)


async def get_each(get: Callable[[bytes], Awaitable[bytes]], block_ids: Sequence[bytes]) -> Fetched:
    """``get`` of each of ``block_ids``, concurrently: its bytes, or the error it raised."""
    import asyncio  # here, not at the top: a file-writer process reads blocks without asyncio

    results = await asyncio.gather(*(get(b) for b in block_ids), return_exceptions=True)
    out: Fetched = {}
    for block_id, result in zip(block_ids, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancelled
        out[block_id] = result
    return out


@runtime_checkable
class LocalStore(Protocol):
    """A store that also reads a block synchronously, without the event loop (``dir://``): a caller
    already in a worker thread reads, verifies and writes a block in that one thread. With the bytes
    comes the file they were read from, when there is one (a cache on the same file system links it)."""

    url: str

    def read_block_file(self, block_id: bytes) -> tuple[bytes, str | None]: ...


@runtime_checkable
class SyncUploader(Protocol):
    """A store that also writes blocks synchronously, from any thread, in batches (``zdb://``,
    ``dir://``): the packer's worker threads upload what they sealed without a hop to the event loop.

    ``upload_missing`` stores each (id, bytes) the store does not have yet and returns, in order,
    True for a block it uploaded and False for one it already had."""

    url: str

    def upload_missing(self, blocks: Sequence[tuple[bytes, bytes]]) -> list[bool]: ...


def block_hex(block_id: bytes) -> str:
    """The hex name of ``block_id``, refusing an id of neither format."""
    # only ids of the two formats are ever looked up: this also keeps odd input out of paths and URLs
    if len(block_id) not in (16, 32):
        raise StoreError(f"a block id must be 16 (v1) or 32 (v2) bytes, got {len(block_id)}")
    return block_id.hex()
