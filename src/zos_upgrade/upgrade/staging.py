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

**Where the blocks come from.** The installed manifest lists each file's block keys with their
lengths (``FileBlocks``), so a staged file's blocks that the node already holds (its own unchanged
part, or another file's) are read from the node (``flist/node_blocks.py``, verified), the rest from
the cache or the store. After the mount each staged file is hashed once: its digest for the manifest
and, block by block against its keys, the lengths its blocks proved to have.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from zos_upgrade.flist.model import BLOCK_SIZE, BlockRef
from zos_upgrade.flist.node_blocks import NodeBlocks
from zos_upgrade.upgrade.manifest import (
    RELEASE_CONTROL_FILES,
    FileBlocks,
    FileRecord,
    Manifest,
    release_services,
    service_name,
)
from zos_upgrade.upgrade.release_entries import ReleaseEntries

__all__ = ["Staging", "choose", "control_only", "node_blocks_of", "resume_only"]

NodeRecord = Callable[[str], FileRecord | None]


@dataclass
class Staging:
    """The release's records for the new manifest, and which of its paths the mount writes."""

    files: dict[str, FileRecord]
    blocks: dict[str, FileBlocks]
    staged: set[str]
    refs: dict[str, tuple[BlockRef, ...]] = field(default_factory=dict)  # staged files' blocks
    lengths: dict[str, list[int]] = field(default_factory=dict)          # ... their plain lengths
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

    def finish(self, tree: Path) -> tuple[dict[str, FileRecord], dict[str, str]]:
        """After the mount: each staged file's digest and block lengths from the tree; the services."""
        for rel, refs in self.refs.items():
            record = self.files[rel]
            digest, sizes = _digest_and_sizes(tree / rel, refs, self.lengths.get(rel, []))
            self.files[rel] = FileRecord("file", record.mode, record.size, digest)
            self.blocks[rel] = FileBlocks(self.blocks[rel].fingerprint, [r.key.hex() for r in refs], sizes)
        configs = {rel: rec for rel, rec in self.files.items() if service_name(rel) is not None}
        return self.files, release_services(tree, configs)


def choose(found: ReleaseEntries, old: Manifest | None, node: NodeRecord,
           seen: dict[str, FileRecord | None] | None = None) -> Staging:
    """Which paths of the release must be staged, against the installed manifest ``old`` and the
    node as ``node`` reads it (``seen``: what it read already, path -> record)."""
    staging = Staging(files={}, blocks={}, staged=set(found.control), seen=dict(seen or {}))
    read = staging.node(node)
    old_files = old.files if old else {}
    old_blocks = old.blocks if old else {}
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
            staging.blocks[rel] = recorded
            if service_name(rel) is not None:
                staging.staged.add(rel)  # unchanged, but the plan reads its text
            continue
        staging.files[rel] = new  # its digest (a fingerprint until then) is the staged file's after finish
        staging.blocks[rel] = FileBlocks(new.digest)
        staging.refs[rel] = found.file_blocks[rel]
        staging.lengths[rel] = found.file_lengths[rel]
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


def node_blocks_of(root: Path, old: Manifest | None) -> NodeBlocks | None:
    """The blocks of the installed files whose lengths the manifest recorded, as a block source."""
    if old is None:
        return None
    def files() -> Iterator[tuple[str, list[tuple[bytes, int]]]]:
        for rel, recorded in old.blocks.items():
            if recorded.sizes and len(recorded.sizes) == len(recorded.keys) and rel in old.files:
                yield rel, [(bytes.fromhex(k), n) for k, n in zip(recorded.keys, recorded.sizes, strict=True)]
    blocks = NodeBlocks.index(root, files())
    return blocks if len(blocks) else None


def _digest_and_sizes(path: Path, refs: tuple[BlockRef, ...], lengths: list[int]) -> tuple[str, list[int]]:
    """The file's blake2b-256, and its blocks' lengths when the file splits into its keys' blocks
    at the lengths the flist gives (``chunking.block_spans``: recorded, or the fixed layout); else
    no lengths (then its blocks are not read from the node)."""
    whole = hashlib.blake2b(digest_size=32)
    sizes: list[int] = []
    proven = True
    with open(path, "rb") as handle:
        for index, ref in enumerate(refs):
            want = lengths[index] if index < len(lengths) else BLOCK_SIZE
            chunk = handle.read(want)
            whole.update(chunk)
            if proven and (not chunk or hashlib.blake2b(chunk, digest_size=len(ref.key)).digest() != ref.key):
                proven = False
            sizes.append(len(chunk))
        while rest := handle.read(1 << 20):
            whole.update(rest)
            proven = False
    return whole.hexdigest(), sizes if proven else []
