"""What a transaction stages: only the added and changed files, chosen from the flist's entries
before any block is fetched, and the new manifest built from the entries afterwards.

**Unchanged** means: the installed manifest recorded the file with the same block fingerprint
(``release_entries``), mode and size, and the node's file still has the content the manifest
recorded (its blake2b digest against the recorded one: the drift check of the plan, read once
here and reused by the plan). An unchanged file keeps its installed record (digest included) and is
neither fetched, nor staged, nor copied. Everything else regular is staged: a new file, a changed
one, one whose node copy drifted or vanished, and every file of an installed manifest written
before block lists existed (it has no fingerprint to compare: the first upgrade by this version is
a full one, later ones are incremental). A symlink is staged when its target changed or the node's
differs. The transaction itself always needs some files of the tree: the control files at the
flist root (hooks, ``hooks.paths``) and the service configs (the plan parses their text).

**Where the blocks come from.** The installed release's flist file is kept on the node
(``<state>/flists/<md5>``, for rollback and flist deltas), and its entries say each installed file's
block keys with their lengths (``installed_blocks``): a staged file's blocks that the node already
holds (its own unchanged part, or another file's) are read from the node (``flist/node_blocks.py``,
verified), the rest from the cache or the store. No block list is stored in the manifest, so its
format stays the one earlier upgraders read (a rollback can hand the node back to one). Without the
kept flist (removed by hand), every regular file counts as changed: a full upgrade, never a wrong one.
A process that read that flist already (it installed the release) takes its entries from that read
(``release_entries.ReadEntries``) once the kept file's md5 is checked again.
Each staged file's digest for the manifest is taken by the mount's writers as they write it
(``Mount.digests``); the tree is not read again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from zos_upgrade.flist.model import BlockRef
from zos_upgrade.flist.node_blocks import NodeBlocks
from zos_upgrade.upgrade.errors import UpgradeError
from zos_upgrade.upgrade.flister import check_kept_flist
from zos_upgrade.upgrade.manifest import (
    RELEASE_CONTROL_FILES,
    FileRecord,
    Manifest,
    digest_file,
    release_services,
    service_name,
)
from zos_upgrade.upgrade.release_entries import ReadEntries, ReleaseEntries, read_entries

if TYPE_CHECKING:
    from zos_upgrade.flist.filewrite import WrittenFile

__all__ = [
    "FileBlocks", "Staging", "choose", "control_only", "installed_blocks", "node_blocks_of", "resume_only",
]

log = logging.getLogger(__name__)

NodeRecord = Callable[[str], FileRecord | None]


@dataclass(frozen=True)
class FileBlocks:
    """An installed regular file as the flist that installed it names it: its block fingerprint (what
    the next plan compares, ``release_entries.block_fingerprint``) and its blocks' keys with their
    plain lengths in file order (block ``i`` lies at the sum of the lengths before it), and ids."""

    fingerprint: str
    keys: tuple[bytes, ...]
    sizes: tuple[int, ...]
    ids: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, fingerprint: str, refs: Sequence[BlockRef], lengths: Sequence[int]) -> FileBlocks:
        """From an flist entry's block refs and their plain lengths (``release_entries``)."""
        return cls(fingerprint, tuple(r.key for r in refs), tuple(lengths), tuple(r.id for r in refs))


@dataclass
class Staging:
    """The release's records for the new manifest, and which of its paths the mount writes."""

    files: dict[str, FileRecord]
    staged: set[str]
    digested: set[str] = field(default_factory=set)  # staged regular files: digest them after the mount
    seen: dict[str, FileRecord | None] = field(default_factory=dict)     # node records read so far

    def only(self, path: str) -> bool:
        """The mount's filter (flist paths: ``/etc/motd``)."""
        return path.lstrip("/") in self.staged

    def node(self, read: NodeRecord) -> NodeRecord:
        """``read`` remembering what it read (the plan asks again for the same paths)."""
        def record(rel: str) -> FileRecord | None:
            if rel not in self.seen:
                self.seen[rel] = read(rel)
            return self.seen[rel]
        return record

    def finish(self, tree: Path, digests: dict[str, WrittenFile] | None = None,
               ) -> tuple[dict[str, FileRecord], dict[str, str]]:
        """After the mount: each staged file's digest (``digests``, what the mount's writers
        digested, else read from the tree); the services."""
        known = digests or {}
        for rel in self.digested:
            record = self.files[rel]
            digest = written.digest if (written := known.get(rel)) else digest_file(tree / rel)
            self.files[rel] = FileRecord("file", record.mode, record.size, digest)
        configs = {rel: rec for rel, rec in self.files.items() if service_name(rel) is not None}
        return self.files, release_services(tree, configs)


def choose(found: ReleaseEntries, old: Manifest | None, node: NodeRecord,
           seen: dict[str, FileRecord | None] | None = None,
           installed: dict[str, FileBlocks] | None = None) -> Staging:
    """Which paths of the release must be staged, against the installed manifest ``old`` (and its
    files' blocks, ``installed_blocks``) and the node as ``node`` reads it (``seen``: what it read
    already, path -> record)."""
    staging = Staging(files={}, staged=set(found.control), seen=dict(seen or {}))
    read = staging.node(node)
    old_files = old.files if old else {}
    old_blocks = installed or {}
    for rel, new in found.files.items():
        if new.kind == "dir":
            staging.files[rel] = new
            continue
        before = old_files.get(rel)
        if new.kind == "link":
            staging.files[rel] = new
            if before != new or read(rel) != new:
                staging.staged.add(rel)
            continue
        recorded = old_blocks.get(rel)
        if (before is not None and recorded is not None and before.kind == "file"
                and recorded.fingerprint == new.digest and (before.mode, before.size) == (new.mode, new.size)
                and read(rel) == before):
            staging.files[rel] = before
            if service_name(rel) is not None:
                staging.staged.add(rel)  # unchanged, but the plan reads its text
            continue
        staging.files[rel] = new  # its digest (a fingerprint until then) is the staged file's after finish
        staging.digested.add(rel)
        staging.staged.add(rel)
    return staging


def resume_only(manifest: Manifest | None, changes: list[str]) -> Callable[[str], bool]:
    """The mount filter of a transaction continued after self-update: what its plan staged (added
    and replaced paths) and what the transaction reads from the tree (control files, services)."""
    wanted = set(changes) | set(RELEASE_CONTROL_FILES)
    if manifest is not None:
        wanted |= {rel for rel in manifest.files if service_name(rel) is not None}

    def only(path: str) -> bool:
        return path.lstrip("/") in wanted

    return only


def control_only(path: str) -> bool:
    """The mount filter of a release mounted only for its hooks (the one a rollback leaves)."""
    return path.lstrip("/") in RELEASE_CONTROL_FILES


def installed_blocks(flists_dir: Path, old: Manifest | None,
                     known: ReadEntries | None = None) -> dict[str, FileBlocks]:
    """Each installed regular file's blocks, from the kept flist of the release ``old`` names
    (``<flists_dir>/<md5>``, md5 checked again; its entries from ``known`` when this process read
    that file already); {} when it is missing or unreadable (then every file counts as changed). A
    file whose entry disagrees with the manifest's size is left out."""
    if old is None:
        return {}
    path = flists_dir / old.md5
    try:
        check_kept_flist(path, old.md5, f"release {old.version}", "its install")
        found = known.get(old.md5) if known is not None else None
        if found is None:
            from zos_upgrade.flist import open_flist  # the readers load with the first flist opened

            with open_flist(path) as reader:
                found = read_entries(reader)
    except (UpgradeError, OSError) as exc:
        log.warning("installed release's flist not usable: every file counts as changed",
                    extra={"flist": str(path), "reason": f"{type(exc).__name__}: {exc}"})
        return {}
    blocks: dict[str, FileBlocks] = {}
    for rel, record in old.files.items():
        entry = found.files.get(rel)
        if record.kind != "file" or entry is None or entry.kind != "file" or entry.size != record.size:
            continue
        refs, lengths = found.file_blocks[rel], found.file_lengths[rel]
        if len(refs) == len(lengths) and sum(lengths) == record.size:
            blocks[rel] = FileBlocks.of(entry.digest, refs, lengths)
    return blocks


def node_blocks_of(root: Path, installed: dict[str, FileBlocks]) -> NodeBlocks | None:
    """The blocks of the installed files (``installed_blocks``), as a block source."""
    def files() -> Iterator[tuple[str, list[tuple[bytes, int]]]]:
        for rel, recorded in installed.items():
            yield rel, list(zip(recorded.keys, recorded.sizes, strict=True))
    blocks = NodeBlocks.index(root, files())
    return blocks if len(blocks) else None
