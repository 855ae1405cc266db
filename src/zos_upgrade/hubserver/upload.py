"""Checking an uploaded flist before it replaces anything: parse it, and check its blocks are held.

The check reads the upload under the hub's limits (:func:`upload_limits`): what a v1 archive may
inflate to, and a deadline on the whole read (the flist layer also bounds every query's work).
"""

from __future__ import annotations

import shutil
from typing import IO, Any

from zos_upgrade.flist import EntryKind, FlistError, Limits, open_flist
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.hubserver.config import HubConfig
from zos_upgrade.hubserver.storage import BlockFolder, HubStorage

__all__ = ["check_upload", "upload_limits"]

_SHOWN_MISSING = 5


def upload_limits(config: HubConfig) -> Limits:
    """The reader limits of an upload check, from the hub's config."""
    return Limits(
        max_metadata_bytes=config.max_inflated_bytes,
        max_inflated_bytes=config.max_inflated_bytes,
        max_inflate_ratio=config.max_inflate_ratio,
        max_seconds=config.upload_check_seconds,
    )


def check_upload(
    storage: HubStorage, blocks: DirStore | None, repo: str, filename: str, source: IO[bytes],
    limits: Limits,
) -> dict[str, Any]:
    """Copy ``source`` next to its final place, parse it, check its blocks, then rename it in.

    Raises :class:`FlistError` (nothing stored) when the flist is corrupt or hostile, or when the
    hub holds a block store and a block the flist needs is not in it.
    """
    with storage.upload_target(repo, filename) as (tmp, handle):
        shutil.copyfileobj(source, handle, 1 << 20)
        handle.flush()
        stats = {"regular": 0, "symlink": 0, "directory": 0, "special": 0, "failure": 0, "fullsize": 0}
        missing: list[str] = []
        names = {EntryKind.FILE: "regular", EntryKind.LINK: "symlink", EntryKind.DIR: "directory"}
        with open_flist(tmp, limits) as reader:
            for entry in reader.entries():
                if entry.path == "/":
                    continue  # zflist does not count the root
                stats[names.get(entry.kind, "special")] += 1
                if entry.kind is EntryKind.FILE:
                    stats["fullsize"] += entry.size
                if blocks is None:
                    continue
                for block in entry.blocks:
                    hexid = block.id.hex()
                    if not _held(blocks, hexid):
                        missing.append(hexid)
        if missing:
            stats["failure"] = len(missing)
            shown = ", ".join(missing[:_SHOWN_MISSING])
            raise FlistError(
                f"{filename}: {len(missing)} block(s) are not in this hub's block store (first: {shown})"
            )
        storage.commit(tmp, repo, filename)
    return stats


def _held(blocks: DirStore, hexid: str) -> bool:
    if isinstance(blocks, BlockFolder):  # the hub's own: never through a link out of its folder
        return blocks.holds(hexid)
    return (blocks.root / hexid[:2] / hexid).is_file() or (blocks.root / hexid).is_file()
