"""Check that every block an flist needs is in its store and authentic, and say which files break.

Unlike materialize, which stops at the first bad block, verify checks every block and reports every
missing or corrupt one together with the file path(s) that use it: an operator repairing a store
needs the whole list, not one id per run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zos_upgrade.flist.blocks import BlockCorrupt, block_id_matches, decrypt_block
from zos_upgrade.flist.formats import open_flist
from zos_upgrade.flist.model import BlockRef, EntryKind, FlistError
from zos_upgrade.flist.reader import FlistReader
from zos_upgrade.flist.stores import BlockMissing, BlockStore, Router, StoreError

__all__ = ["BlockProblem", "VerifyReport", "verify"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockProblem:
    block_id: str  # hex
    reason: str
    paths: tuple[str, ...]  # every file that uses the block


@dataclass
class VerifyReport:
    files: int = 0
    blocks: int = 0  # distinct blocks checked
    bytes_checked: int = 0  # plain bytes of the distinct blocks that are fine
    missing: list[BlockProblem] = field(default_factory=list)
    corrupt: list[BlockProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt


async def verify(
    flist: Path | FlistReader,
    store: BlockStore | None = None,
    *,
    concurrency: int = 16,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Fetch, check and decrypt every distinct block of ``flist``; never raises for a bad block.

    ``store`` defaults to the routes recorded in the flist. Raises only when the flist itself cannot
    be read (or is hostile) or a store fails in a way that is not "this block is missing".
    """
    own_reader = not isinstance(flist, FlistReader)
    reader = flist if isinstance(flist, FlistReader) else open_flist(Path(flist))
    own_store = store is None
    try:
        report = VerifyReport()
        users: dict[BlockRef, list[str]] = {}
        # what a cdc flist records of each block's length, checked against the decrypted block
        recorded: dict[BlockRef, int] = {}
        for entry in reader.entries():
            if entry.kind is not EntryKind.FILE:
                continue
            report.files += 1
            for index, ref in enumerate(entry.blocks):
                users.setdefault(ref, []).append(entry.path)
                if entry.lengths:
                    recorded.setdefault(ref, entry.lengths[index])
        if store is None:
            routes = reader.routes()
            if not routes:
                raise FlistError("the flist names no block store (no routes): pass a store explicitly")
            store = Router(routes)
        report.blocks = len(users)
        limit = asyncio.Semaphore(concurrency)
        checked = store

        async def check(ref: BlockRef, paths: list[str]) -> None:
            async with limit:
                kind, reason, plain_len = await _check_block(checked, ref)
            if kind == "ok" and recorded.get(ref, plain_len) != plain_len:
                kind, reason = "corrupt", (f"holds {plain_len} plain bytes, the flist records "
                                           f"{recorded[ref]} for it")
            if kind == "ok":
                report.bytes_checked += plain_len
            else:
                found = BlockProblem(ref.id.hex(), reason, tuple(dict.fromkeys(paths)))
                (report.missing if kind == "missing" else report.corrupt).append(found)
            if progress is not None:
                progress(1)

        await asyncio.gather(*(check(ref, paths) for ref, paths in users.items()))
    finally:
        if own_store and store is not None:
            await store.aclose()
        if own_reader:
            reader.close()
    report.missing.sort(key=lambda p: p.block_id)
    report.corrupt.sort(key=lambda p: p.block_id)
    log.info("flist verified", extra={"files": report.files, "blocks": report.blocks,
                                      "missing": len(report.missing), "corrupt": len(report.corrupt)})
    return report


async def _check_block(store: BlockStore, ref: BlockRef) -> tuple[str, str, int]:
    """("ok", "", plain length) or ("missing" | "corrupt", why, 0)."""
    try:
        stored = await store.get(ref.id)
    except BlockMissing as exc:
        return "missing", str(exc), 0
    except StoreError as exc:
        # a store that answered with an error about this block is as good as missing for a node
        return "missing", str(exc), 0
    if not block_id_matches(ref.id, stored):
        return "corrupt", "stored bytes do not hash to the block id", 0
    try:
        plain = await asyncio.to_thread(decrypt_block, ref, stored)
    except BlockCorrupt as exc:
        return "corrupt", str(exc), 0
    return "ok", "", len(plain)
