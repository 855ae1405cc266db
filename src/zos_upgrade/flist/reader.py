"""The one reading interface of both flist formats and the checks every entry must pass.

Readers stream: :meth:`FlistReader.entries` yields one :class:`Entry` at a time, parents before
children, so a million-entry flist is read in bounded memory. Every entry goes through
:class:`EntryChecker` (SPEC 4.3) before it is yielded; a hostile flist raises :class:`HostileFlist`
naming the entry, never a half-trusted tree. Which reader opens a file is decided in
:mod:`zos_upgrade.flist.formats`, which imports the readers; they import this module, never the reverse.
"""

from __future__ import annotations

import abc
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

from zos_upgrade.flist.blocks import BLOCK_SIZE
from zos_upgrade.flist.model import Entry, EntryKind, HostileFlist, Limits
from zos_upgrade.flist.stores import Route

__all__ = ["EntryChecker", "FlistFormat", "FlistReader", "blocks_for", "check_name", "join"]

FlistFormat = Literal["v1", "v2"]


class FlistReader(abc.ABC):
    """An open flist of either format; use as a context manager."""

    format: FlistFormat
    path: Path

    @abc.abstractmethod
    def entries(self) -> Iterator[Entry]:
        """Every entry, streamed, parents before children, each checked (raises HostileFlist)."""

    @abc.abstractmethod
    def tags(self) -> dict[str, str]:
        """v2: the tag table; v1: the metadata table (values as stored text)."""

    @abc.abstractmethod
    def routes(self) -> list[Route]:
        """Where the blocks live, as written in the flist; may be empty."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the database and any temporary file."""

    def __enter__(self) -> FlistReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check_name(name: str, where: str) -> None:
    """Refuse a name that could escape or alias its directory (``where`` names the parent)."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise HostileFlist(f"{where}: entry name {name!r} is not allowed (empty, '.', '..', '/' or NUL)")


def join(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


def blocks_for(size: int) -> int:
    """How many blocks a file of ``size`` bytes has (the last one may be shorter; empty has none)."""
    return -(-size // BLOCK_SIZE)


class EntryChecker:
    """The per-entry rules of SPEC 4.3 plus the reader limits, applied as entries stream by.

    Structural rules that need the format's own shape (duplicates within a directory, cycles) are
    checked by each reader where the structure makes them cheap.
    """

    def __init__(self, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        self.count = 0
        self.total_bytes = 0

    def fail(self, path: str, why: str) -> HostileFlist:
        return HostileFlist(f"{self.source}: entry {path!r}: {why}")

    def check(self, entry: Entry) -> Entry:
        limits, path, kind = self.limits, entry.path, entry.kind
        self.count += 1
        if self.count > limits.max_entries:
            raise self.fail(path, f"more than {limits.max_entries} entries")
        # UTF-8 takes 1 to 4 bytes a character: encode only when the length alone cannot decide
        if len(path) > limits.max_path_bytes // 4 and _utf8_len(path) > limits.max_path_bytes:
            raise self.fail(path, f"path longer than {limits.max_path_bytes} bytes")
        if path != "/":
            name = entry.name
            if len(name) > limits.max_name_bytes // 4 and _utf8_len(name) > limits.max_name_bytes:
                raise self.fail(path, f"name longer than {limits.max_name_bytes} bytes")
            if path.count("/") > limits.max_depth:
                raise self.fail(path, f"deeper than {limits.max_depth} levels")
        elif kind is not EntryKind.DIR:
            raise self.fail(path, "the root is not a directory")
        # owners, times and device numbers must fit what the node's system calls accept
        if not (0 <= entry.uid <= _MAX_ID and 0 <= entry.gid <= _MAX_ID):
            raise self.fail(path, f"owner {entry.uid}:{entry.gid} is outside 0..{_MAX_ID}")
        if not (-_MAX_TIME <= entry.mtime <= _MAX_TIME and -_MAX_TIME <= entry.ctime <= _MAX_TIME):
            raise self.fail(path, f"time {entry.mtime}/{entry.ctime} is out of range")
        if not 0 <= entry.rdev < 2**64 or not 0 <= entry.mode <= 0o177777:
            raise self.fail(path, f"device {entry.rdev} or mode {entry.mode:#o} is out of range")
        file_type = stat.S_IFMT(entry.mode)
        if file_type != _KIND_TYPES.get(kind, file_type):
            raise self.fail(path, f"mode {entry.mode:#o} does not match its kind {kind.value}")
        if kind is EntryKind.SPECIAL and file_type not in _SPECIAL_TYPES:
            raise self.fail(path, f"special entry with mode {entry.mode:#o} is no socket, device or fifo")
        if kind is not EntryKind.FILE:
            if entry.blocks:
                raise self.fail(path, f"a {kind.value} entry carries {len(entry.blocks)} blocks")
            return entry
        size = entry.size
        if size < 0:
            raise self.fail(path, f"negative size {size}")
        if size > limits.max_file_bytes:
            raise self.fail(path, f"size {size} exceeds the {limits.max_file_bytes}-byte file limit")
        if entry.lengths:
            self._check_lengths(entry)
        elif len(entry.blocks) != -(-size // BLOCK_SIZE):
            raise self.fail(
                path, f"size {size} needs {blocks_for(size)} blocks of {BLOCK_SIZE} bytes, "
                f"the flist lists {len(entry.blocks)}"
            )
        self.total_bytes += size
        if self.total_bytes > limits.max_total_bytes:
            raise self.fail(path, f"files add up to more than {limits.max_total_bytes} bytes")
        return entry

    def _check_lengths(self, entry: Entry) -> None:
        """A content-defined file: one length a block, each a block's worth, adding up to the size."""
        lengths, path = entry.lengths, entry.path
        if len(lengths) != len(entry.blocks):
            raise self.fail(path, f"{len(entry.blocks)} blocks but {len(lengths)} block lengths")
        bad = [n for n in lengths if n.__class__ is not int or not 0 < n <= BLOCK_SIZE]
        if bad:
            raise self.fail(path, f"block length {bad[0]!r} is outside 1..{BLOCK_SIZE}")
        if sum(lengths) != entry.size:
            raise self.fail(path, f"its block lengths add up to {sum(lengths)} bytes, "
                            f"the size says {entry.size}")


_MAX_ID = 2**32 - 2  # uid_t/gid_t; 2**32 - 1 is (uid_t)-1, "no change"
_MAX_TIME = 2**62
_KIND_TYPES = {EntryKind.DIR: stat.S_IFDIR, EntryKind.FILE: stat.S_IFREG, EntryKind.LINK: stat.S_IFLNK}
_SPECIAL_TYPES = frozenset((stat.S_IFSOCK, stat.S_IFBLK, stat.S_IFCHR, stat.S_IFIFO))


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))
