"""A release as its flist's entries say, before any block is fetched: plan records, hooks, blocks.

Both the transaction (``staging.py``) and ``zos-upgrade check`` (``preview.py``) plan from this. An
flist entry carries no content digest, only its blocks' keys (``key = blake2b(plain block)``,
``flist/blocks.py``), so a regular file is named here by its **block fingerprint**: the blake2b-256
of its block keys in order. Equal fingerprints mean equal content (the keys are hashes of the
content), whatever the block boundaries: the fingerprint never assumes a block size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zos_upgrade.flist.chunking import FIXED, Chunking, block_lengths, chunking_of
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, HostileFlist
from zos_upgrade.upgrade.manifest import HOOK_NAMES, RELEASE_CONTROL_FILES, FileRecord, service_name

if TYPE_CHECKING:
    from zos_upgrade.flist.reader import FlistReader  # the readers load with the first flist opened

__all__ = ["FINGERPRINT_PREFIX", "ReadEntries", "ReleaseEntries", "block_fingerprint", "read_entries"]

FINGERPRINT_PREFIX = "blocks:"


def block_fingerprint(keys: Iterable[bytes]) -> str:
    """The content of a file named by its blocks' keys, in order (both flist formats)."""
    import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

    # one update of the keys joined: the same digest as one update per key, in fewer steps
    return FINGERPRINT_PREFIX + hashlib.blake2b(b"".join(keys), digest_size=32).hexdigest()


@dataclass
class ReleaseEntries:
    """What an flist file says of its release: entries as plan records (a regular file's digest is
    its block fingerprint), the control files at its root, every block."""

    tags: dict[str, str]
    width: int                                   # key width: 16 (v1) or 32 (v2)
    chunking: Chunking = FIXED                   # how its files were cut into blocks (its tag)
    files: dict[str, FileRecord] = field(default_factory=dict)
    file_blocks: dict[str, tuple[BlockRef, ...]] = field(default_factory=dict)  # regular files' blocks
    file_lengths: dict[str, list[int]] = field(default_factory=dict)  # ... and their plain lengths
    service_fingerprints: dict[str, str] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)
    control: list[str] = field(default_factory=list)   # hooks and hooks.paths present at the root
    # the control files' blocks and plain lengths (they are never installed: a rollback needs them)
    control_blocks: dict[str, tuple[tuple[BlockRef, ...], list[int]]] = field(default_factory=dict)
    blocks: dict[bytes, int] = field(default_factory=dict)  # block id -> plain size
    block_keys: dict[bytes, bytes] = field(default_factory=dict)  # block id -> its key

    def take(self, entry: Entry) -> None:
        rel = entry.path.lstrip("/")
        if not rel or entry.kind is EntryKind.SPECIAL:
            return  # special files are never installed (materialize skips them too)
        if rel in self.files or rel in self.control:
            # materialize refuses it too, but only for the entries it writes: the plan sees them all
            raise HostileFlist(f"entry {entry.path!r} appears twice")
        lengths = block_lengths(entry) if entry.kind is EntryKind.FILE else []
        blocks, block_keys = self.blocks, self.block_keys
        for ref, length in zip(entry.blocks, lengths, strict=False):
            blocks[ref.id] = length
            block_keys[ref.id] = ref.key
        if rel in RELEASE_CONTROL_FILES:
            self.control.append(rel)
            if entry.kind is EntryKind.FILE:
                self.control_blocks[rel] = (entry.blocks, lengths)
            if rel in HOOK_NAMES:
                self.hooks.append(rel)
            return
        if entry.kind is EntryKind.DIR:
            self.files[rel] = FileRecord("dir", entry.permissions, 0, "")
        elif entry.kind is EntryKind.LINK:
            self.files[rel] = FileRecord("link", 0o777, 0, entry.target)  # a symlink's mode on Linux
        else:
            fingerprint = block_fingerprint(ref.key for ref in entry.blocks)
            self.files[rel] = FileRecord("file", entry.permissions, entry.size, fingerprint)
            self.file_blocks[rel] = entry.blocks
            self.file_lengths[rel] = lengths
            name = service_name(rel)
            if name is not None:
                self.service_fingerprints[name] = fingerprint


def read_entries(reader: FlistReader) -> ReleaseEntries:
    """Every entry of an open flist, taken in its order."""
    release = ReleaseEntries(tags=reader.tags(), width=16 if reader.format == "v1" else 32,
                             chunking=chunking_of(reader))
    for entry in reader.entries():
        release.take(entry)
    release.hooks.sort(key=HOOK_NAMES.index)
    return release


class ReadEntries:
    """The entries of the last flist file a transaction of this process read, by the file's md5.

    They are a function of the file's bytes alone, so the next transaction, which finds that release
    installed, takes the installed files' blocks from here instead of reading its kept flist again
    (``staging.installed_blocks``; 13 ms for 1,029 entries, measured). One release is kept, never
    changed once read; a process that did not read it (a restart) reads the kept file.
    """

    def __init__(self) -> None:
        self._md5 = ""
        self._entries: ReleaseEntries | None = None

    def remember(self, md5: str, entries: ReleaseEntries) -> None:
        self._md5, self._entries = md5, entries

    def get(self, md5: str) -> ReleaseEntries | None:
        return self._entries if md5 and md5 == self._md5 else None
