"""Flister: a verified release's flist file -> a verified tree under ``<state>/mounts/<md5>``.

A transaction mounts only what it stages (``staging.py``): the caller's ``check`` sees the opened
flist and returns a :class:`Partial` (which paths to write, and the node's own blocks to read before
the cache and the store); without one the whole tree is written.

It neither downloads nor knows the hub: a release source (``zos_upgrade.sources``) already put the
flist file into :attr:`Flister.downloads_dir` and checked it; every block the flist names is checked
against the flist itself while materializing, whatever store serves it.

The original mounted flists with a FUSE daemon; we materialize them instead, through the shared
content-addressed block cache (``<state>/cache/blocks``), so a release that shares blocks with the
installed one downloads only what the node lacks. A mount is built under a temporary name and renamed
to ``<md5>`` when complete: a directory named by an md5 is always a finished one, and a crash leaves only
a temporary directory that :meth:`Flister.sweep` removes. Each written file's content digest comes
with the mount (the writers take it as they write). The upgrader's apply moves the staged files out
of the tree onto the node (``nodefs.py``): the tree is never the node's live copy. Blocks fetched
from a store are kept in the cache (a re-mount after a self-update finds them there); blocks read
from the node's files are not (the node is the copy).

A mount is never reused: whatever sits at ``<md5>`` when a release is mounted again (a retry after a
failed try, a re-mount after self-update) may have been altered since, so it is dropped and the tree
rebuilt from the flist. The rebuild is local: every block comes from the node or the cache, checked
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from zos_upgrade import fsutil
from zos_upgrade.sources.base import VerifiedRelease
from zos_upgrade.upgrade.errors import UpgradeError

if TYPE_CHECKING:
    # the block stack (stores, codecs, ciphers) is imported by the first mount, not by a daemon
    # that only builds its Flister and polls (issue 19: an idle daemon's memory)
    from zos_upgrade.flist import BlockStore, FlistReader, Route
    from zos_upgrade.flist.cache import BlockCache
    from zos_upgrade.flist.filewrite import LocalBlocks, WrittenFile
    from zos_upgrade.flist.materialize import MaterializeReport

__all__ = ["Flister", "Mount", "MountError", "Partial", "check_kept_flist"]

log = logging.getLogger(__name__)


class MountError(UpgradeError):
    """An flist could not be fetched or turned into a tree."""


@dataclass(frozen=True)
class Partial:
    """What of a release to write: ``only(path)`` selects the files and links (flist paths, ``/a/b``;
    only the directories they lie in are made), ``local`` serves verified blocks already on the node."""

    only: Callable[[str], bool]
    local: LocalBlocks | None = None
    # add the blocks fetched to the node's cache: only when the same tree may be mounted again
    # without the network (the continuation after a self-update); else each block is written once
    keep_fetched: bool = True


@dataclass(frozen=True)
class Mount:
    path: Path                 # the tree (read it, never write it)
    md5: str                   # md5 of the flist file: the mount's name
    report: MaterializeReport  # what materializing cost (blocks fetched, or taken from the cache)
    flist: Path                # the flist file in <state>/flists
    # each regular file written, relative to the tree -> its content, digested as written
    digests: dict[str, WrittenFile] = field(default_factory=dict)


def _make_writable(func: Callable[..., object], path: str, _exc: object) -> None:
    """rmtree helper: a tree may hold read-only directories (their mode comes from the flist)."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path), 0o700)
        func(path)


class Flister:
    """Turn verified releases into trees under ``state_dir``; one instance per node."""

    def __init__(
        self,
        state_dir: Path,
        *,
        store_url: str | None = None,
        concurrency: int = 16,
        workers: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.mounts_dir = self.state_dir / "mounts"
        # where the release sources write the flist files (named by md5) this Flister mounts
        self.downloads_dir = self.state_dir / "flists"
        self._cache_root = self.state_dir / "cache" / "blocks"
        self._cache: BlockCache | None = None
        self._store_url = store_url
        self._concurrency = concurrency
        self._workers = workers  # file-writer processes of materialize (None: automatic)

    @property
    def cache(self) -> BlockCache:
        """The node's block cache (``<state_dir>/cache/blocks``), opened at first use."""
        if self._cache is None:
            from zos_upgrade.flist.cache import BlockCache

            self._cache = BlockCache(self._cache_root)
        return self._cache

    async def mount(self, release: VerifiedRelease, *,
                    check: Callable[[FlistReader], Partial | None] | None = None) -> Mount:
        """The tree of ``release.flist``, built afresh (an existing mount of the same md5 is dropped).

        ``check`` sees the opened flist before any block is fetched, and refuses it by raising, or
        returns the part of it to write (None: all of it): one open of the flist serves both (opening
        a v1 flist inflates its database).
        """
        flist, md5, where = release.flist, release.md5, release.source
        dest = self.mounts_dir / md5
        self.mounts_dir.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(dest):
            await asyncio.to_thread(self._drop, dest)
            log.info("existing mount dropped, rebuilding it", extra={"flist": where, "md5": md5})
        tmp = self._temp_name(md5)
        digests: dict[str, WrittenFile] = {}
        from zos_upgrade.flist import open_flist
        from zos_upgrade.flist.materialize import materialize
        from zos_upgrade.flist.replay import ReplayingReader

        try:
            # ``check`` reads every entry to plan; materialize walks them again from that one read
            with ReplayingReader(open_flist(flist)) as reader:
                part = check(reader) if check is not None else None
                store = self._store_for(reader.routes(), release)
                try:
                    report = await materialize(
                        reader, tmp, store=store, cache=self.cache, concurrency=self._concurrency,
                        workers=self._workers, only=part.only if part else None,
                        local_blocks=part.local if part else None, digests=digests,
                        keep_fetched=part.keep_fetched if part else True,
                    )
                finally:
                    await store.aclose()
            os.rename(tmp, dest)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, tmp, False, _make_writable)
            raise
        fsutil.fsync_dir(self.mounts_dir)
        log.info("flist mounted", extra={"flist": where, "md5": md5, "path": str(dest)})
        return Mount(dest, md5, report, flist, {path.lstrip("/"): digest for path, digest in digests.items()})

    def _temp_name(self, md5: str) -> Path:
        return self.mounts_dir / f".{md5}{fsutil.TEMP_MARK}{os.getpid()}-{fsutil.random_suffix()}"

    def _drop(self, dest: Path) -> None:
        """Remove what sits at a mount's name: renamed aside first (a crash leaves it to sweep)."""
        aside = self._temp_name(dest.name)
        os.rename(dest, aside)
        fsutil.fsync_dir(self.mounts_dir)
        if _is_dir(aside):
            shutil.rmtree(aside, onerror=_make_writable)
        else:
            aside.unlink()

    def umount(self, path: Path) -> None:
        """Remove a mount (only ever one of ours: a directory directly under ``<state>/mounts``)."""
        path = Path(path)
        if path.parent.resolve() != self.mounts_dir.resolve() or path.name.startswith("."):
            raise MountError(
                f"{path} is not a mount of this Flister (expected a directory in {self.mounts_dir})"
            )
        shutil.rmtree(path, onerror=_make_writable)

    def sweep(self) -> list[Path]:
        """Remove what a crash left half-built (temporary mounts and downloads); return what went."""
        removed: list[Path] = []
        folders = [self.mounts_dir, self.downloads_dir]
        if self._cache_root.is_dir():  # the path, not the cache: a sweep needs no block codec
            # a block write cut by a kill leaves its temp file in the block's fan-out directory
            folders += [d for d in self._cache_root.iterdir() if d.is_dir() and not d.is_symlink()]
        for folder in folders:
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if fsutil.TEMP_MARK not in entry.name:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, onerror=_make_writable)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
        if removed:
            log.info("stale mounts swept", extra={"paths": [str(p) for p in removed]})
        return removed

    def prune(self, keep: set[str]) -> None:
        """Remove every complete mount whose md5 is not in ``keep`` (the installed releases)."""
        if not self.mounts_dir.is_dir():
            return
        for entry in self.mounts_dir.iterdir():
            if entry.name.startswith(".") or entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, onerror=_make_writable)

    # -- internals -------------------------------------------------------------------------------

    def _store_for(self, routes: list[Route], release: VerifiedRelease) -> BlockStore:
        """The stores the flist records, then ours (configured, or the release's) as a last resort.

        ``flist pack`` records where it wrote the blocks, which a node may not reach (a dir:// on the
        packing machine) while the hub serves the same blocks. Every block is checked against the
        flist whatever store it came from, so the extra source cannot change what is installed.
        """
        from zos_upgrade.flist import Route, Router, open_store

        fallback = self._store_url or release.block_store
        if not routes:
            if fallback is None:
                raise MountError(
                    f"flist {release.source} names no block store, and neither a store URL is configured "
                    "nor does its source name one"
                )
            return open_store(fallback)
        return Router([*routes, *([Route(0, 255, fallback)] if fallback else [])])


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def check_kept_flist(path: Path, md5: str, what: str, since: str) -> None:
    """UpgradeError unless the flist file at ``path`` still has the md5 it was checked with at ``since``."""
    if not path.is_file():
        raise UpgradeError(f"{what}: kept flist file {path} is missing")
    found = fsutil.file_md5(path)
    if found != md5:
        raise UpgradeError(f"{what}: kept flist file {path} changed since {since} "
                           f"(md5 {found}, expected {md5})")
