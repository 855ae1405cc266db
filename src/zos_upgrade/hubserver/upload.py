"""Uploads before they replace anything: an flist is parsed and its blocks checked (``upload-flist``);
an archive is unpacked under guard and packed into the hub's block store (``upload``).

The check reads the upload under the hub's limits (:func:`upload_limits`): what a v1 archive may
inflate to, and a deadline on the whole read (the flist layer also bounds every query's work).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from zos_upgrade.flist import EntryKind, FlistError, Limits, open_flist
from zos_upgrade.flist.pack import PackError, pack
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.fsutil import TEMP_MARK
from zos_upgrade.hubserver.archive import ArchiveLimits, ArchiveRefused, unpack_archive
from zos_upgrade.hubserver.config import HubConfig
from zos_upgrade.hubserver.contents import walk_like_zflist
from zos_upgrade.hubserver.storage import BlockFolder, HubStorage

__all__ = ["check_upload", "pack_upload", "upload_limits", "zflist_reply"]

_SHOWN_MISSING = 5
_ARCHIVE_SECONDS = 60.0  # when the limits set no deadline (the hub's config always does)


def upload_limits(config: HubConfig) -> Limits:
    """The reader limits of an upload check, from the hub's config."""
    return Limits(
        max_metadata_bytes=config.max_inflated_bytes,
        max_inflated_bytes=config.max_inflated_bytes,
        max_inflate_ratio=config.max_inflate_ratio,
        max_seconds=config.upload_check_seconds,
    )


def zflist_reply(response: dict[str, Any]) -> dict[str, Any]:
    """The object the real 0-hub puts under ``files`` in an upload reply: zflist's own JSON output
    (``success``, ``error``, ``response``) with the hub's ``status`` (zflist's exit code) added."""
    return {"success": True, "error": None, "response": response, "status": 0}


def _walk_stats(
    path: Path, limits: Limits, blocks: DirStore | None, *, content: bool
) -> tuple[dict[str, Any], list[str]]:
    """zflist's counts of the flist at ``path`` (``check`` also lists ``content``, ``putdir`` does
    not), and the ids of the blocks ``blocks`` does not hold."""
    listed: list[dict[str, Any]] = []
    stats: dict[str, Any] = {"content": listed} if content else {}
    stats.update({"regular": 0, "symlink": 0, "directory": 0, "special": 0, "failure": 0, "fullsize": 0})
    missing: list[str] = []
    names = {EntryKind.FILE: "regular", EntryKind.LINK: "symlink", EntryKind.DIR: "directory"}
    with open_flist(path, limits) as reader:
        entries = walk_like_zflist(reader.entries()) if content else list(reader.entries())
    for entry in entries:
        if entry.path == "/":
            continue  # zflist does not count the root
        if content:
            listed.append({"size": entry.size, "path": entry.path})
        stats[names.get(entry.kind, "special")] += 1
        if entry.kind is EntryKind.FILE:
            stats["fullsize"] += entry.size
        if blocks is None:
            continue
        for block in entry.blocks:
            hexid = block.id.hex()
            if not _held(blocks, hexid):
                missing.append(hexid)
    stats["failure"] = len(missing)
    return stats, missing


def check_upload(
    storage: HubStorage, blocks: DirStore | None, repo: str, filename: str, source: IO[bytes],
    limits: Limits,
) -> dict[str, Any]:
    """Copy ``source`` next to its final place, parse it, check its blocks, then rename it in;
    returns zflist's ``check`` output, as the real hub replies it.

    Raises :class:`FlistError` (nothing stored) when the flist is corrupt or hostile, or when the
    hub holds a block store and a block the flist needs is not in it.
    """
    with storage.upload_target(repo, filename) as (tmp, handle):
        shutil.copyfileobj(source, handle, 1 << 20)
        handle.flush()
        stats, missing = _walk_stats(tmp, limits, blocks, content=True)
        if missing:
            shown = ", ".join(missing[:_SHOWN_MISSING])
            raise FlistError(
                f"{filename}: {len(missing)} block(s) are not in this hub's block store (first: {shown})"
            )
        storage.commit(tmp, repo, filename)
    return zflist_reply(stats)


def pack_upload(
    storage: HubStorage, blocks: DirStore, repo: str, filename: str, source: IO[bytes], size: int,
    limits: Limits,
) -> dict[str, Any]:
    """Unpack the ``.tar.gz`` ``source`` in a hidden work folder of the storage, pack it as the v1
    flist ``repo/filename`` with its blocks into ``blocks``, and rename it in; returns zflist's
    ``putdir`` output, as the real hub replies it. Raises :class:`ArchiveRefused` or
    :class:`FlistError` with nothing stored."""
    seconds = limits.max_seconds if limits.max_seconds is not None else _ARCHIVE_SECONDS
    archive_limits = ArchiveLimits(limits.max_inflated_bytes, limits.max_inflate_ratio, seconds)
    with tempfile.TemporaryDirectory(prefix=f".upload{TEMP_MARK}", dir=storage.root) as work:
        tree = Path(work) / "tree"
        tree.mkdir()
        unpack_archive(source, size, tree, archive_limits)
        out = Path(work) / filename
        try:
            asyncio.run(pack(tree, out, blocks))
        except PackError as exc:
            raise ArchiveRefused(f"archive could not be packed: {exc}") from exc
        stats, _ = _walk_stats(out, limits, None, content=False)
        storage.commit(out, repo, filename)
    return zflist_reply(stats)


def _held(blocks: DirStore, hexid: str) -> bool:
    if isinstance(blocks, BlockFolder):  # the hub's own: never through a link out of its folder
        return blocks.holds(hexid)
    return (blocks.root / hexid[:2] / hexid).is_file() or (blocks.root / hexid).is_file()
