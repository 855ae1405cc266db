"""The one way in to both flist formats: ``open_flist`` picks a reader by content, ``write_flist`` a
writer by name.

The format modules are imported on first use: a process that reads only v2 flists never loads capnp
or YAML, and importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from zos_upgrade.flist.model import Entry, FlistError, Limits
from zos_upgrade.flist.reader import FlistFormat, FlistReader
from zos_upgrade.flist.stores import Route

__all__ = ["format_for_name", "open_flist", "sniff", "sniff_head", "write_flist"]

_GZIP_MAGIC = b"\x1f\x8b"
_SQLITE_MAGIC = b"SQLite format 3\x00"

_DEFAULT_LIMITS = Limits()


def sniff(path: Path) -> FlistFormat:
    """Which format a file is, by its magic bytes (gzip: v1 tar.gz, SQLite: v2)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise FlistError(f"{path}: cannot open flist: {exc}") from exc
    return sniff_head(head, str(path))


def sniff_head(head: bytes, where: str) -> FlistFormat:
    """Which format the first bytes of ``where`` (a file, a download) announce; FlistError if none."""
    if head.startswith(_GZIP_MAGIC):
        return "v1"
    if head[: len(_SQLITE_MAGIC)] == _SQLITE_MAGIC:
        return "v2"
    raise FlistError(f"{where}: not an flist: expected gzip (v1 .flist) or SQLite (v2 .fl) magic bytes")


def format_for_name(path: Path) -> FlistFormat:
    """The format a file name asks for: ``.fl`` is v2 (rfs), ``.flist`` is v1 (0-flist)."""
    if path.suffix == ".fl":
        return "v2"
    if path.suffix == ".flist":
        return "v1"
    raise FlistError(f"{path}: cannot tell the flist format: expected a .fl (v2) or .flist (v1) suffix")


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
    if format_for_name(target) == "v2":
        from zos_upgrade.flist.v2 import write_v2

        write_v2(target, entries, tags=tags, routes=routes)
    else:
        from zos_upgrade.flist.v1 import write_v1

        write_v1(target, entries, tags=tags, routes=routes)
