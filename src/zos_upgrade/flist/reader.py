"""The one reading interface of both flist formats, the checks every entry must pass, and the dispatch.

Readers stream: :meth:`FlistReader.entries` yields one :class:`Entry` at a time, parents before
children, so a million-entry flist is read in bounded memory. Every entry goes through
:class:`EntryChecker` (SPEC 4.3) before it is yielded; a hostile flist raises :class:`HostileFlist`
naming the entry, never a half-trusted tree.
"""

from __future__ import annotations

import abc
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from zos_upgrade.flist.blocks import BLOCK_SIZE
from zos_upgrade.flist.model import Entry, EntryKind, FlistError, HostileFlist, Limits
from zos_upgrade.flist.stores import Route

__all__ = ["EntryChecker", "FlistReader", "check_name", "open_flist", "write_flist"]

FlistFormat = Literal["v1", "v2"]

_GZIP_MAGIC = b"\x1f\x8b"
_SQLITE_MAGIC = b"SQLite format 3\x00"


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
        if len(entry.blocks) != -(-size // BLOCK_SIZE):
            raise self.fail(
                path, f"size {size} needs {blocks_for(size)} blocks of {BLOCK_SIZE} bytes, "
                f"the flist lists {len(entry.blocks)}"
            )
        self.total_bytes += size
        if self.total_bytes > limits.max_total_bytes:
            raise self.fail(path, f"files add up to more than {limits.max_total_bytes} bytes")
        return entry


_MAX_ID = 2**32 - 2  # uid_t/gid_t; 2**32 - 1 is (uid_t)-1, "no change"
_MAX_TIME = 2**62
_KIND_TYPES = {EntryKind.DIR: stat.S_IFDIR, EntryKind.FILE: stat.S_IFREG, EntryKind.LINK: stat.S_IFLNK}
_SPECIAL_TYPES = frozenset((stat.S_IFSOCK, stat.S_IFBLK, stat.S_IFCHR, stat.S_IFIFO))


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def sniff(path: Path) -> FlistFormat:
    """Which format a file is, by its magic bytes (gzip: v1 tar.gz, SQLite: v2)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise FlistError(f"{path}: cannot open flist: {exc}") from exc
    if head.startswith(_GZIP_MAGIC):
        return "v1"
    if head == _SQLITE_MAGIC:
        return "v2"
    raise FlistError(f"{path}: not an flist: expected gzip (v1 .flist) or SQLite (v2 .fl) magic bytes")


_DEFAULT_LIMITS = Limits()


def open_flist(path: Path | str, limits: Limits = _DEFAULT_LIMITS) -> FlistReader:
    """Open an flist of either format, chosen by its content (not its name)."""
    source = Path(path)
    if sniff(source) == "v1":
        from zos_upgrade.flist.v1 import V1Reader

        return V1Reader(source, limits)
    from zos_upgrade.flist.v2 import V2Reader

    return V2Reader(source, limits)


def write_flist(
    path: Path | str,
    entries: Iterable[Entry],
    *,
    tags: Mapping[str, str] = {},
    routes: Sequence[Route] = (),
) -> None:
    """Write ``entries`` as an flist, atomically; the suffix picks the format (.fl: v2, .flist: v1)."""
    target = Path(path)
    if target.suffix == ".fl":
        from zos_upgrade.flist.v2 import write_v2

        write_v2(target, entries, tags=tags, routes=routes)
    elif target.suffix == ".flist":
        from zos_upgrade.flist.v1 import write_v1

        write_v1(target, entries, tags=tags, routes=routes)
    else:
        raise FlistError(f"{target}: cannot tell the flist format: expected a .fl (v2) or .flist (v1) suffix")
