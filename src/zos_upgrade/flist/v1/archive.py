"""The tar.gz a v1 flist is: unpacked member by member, never by name, and packed byte-identically.

Reading never extracts the archive: every member is checked (no absolute path, no ``..``, no NUL, no
link or device, nothing but ``flistdb.sqlite3`` and ``router.yaml``, each at most once and within
its size limit) and only those two are copied out, the database into a directory the caller owns.
The gzip stream is inflated through a counter: a decompression bomb stops at the first byte over
its allowance (an absolute cap and a ratio to the compressed size), never after filling a disk.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zos_upgrade.flist.model import FlistError, FlistTooCostly, HostileFlist, Limits
from zos_upgrade.fsutil import atomic_writer

__all__ = ["DB_MEMBER", "ROUTER_MEMBER", "Unpacked", "inflate_allowance", "pack", "unpack"]

DB_MEMBER = "flistdb.sqlite3"
ROUTER_MEMBER = "router.yaml"
_MAX_ROUTER_BYTES = 1024 * 1024
# a tiny honest archive (tar headers and padding, a mostly empty database) inflates far more than
# any ratio a big one needs: every archive may inflate to this much whatever its ratio
INFLATE_FLOOR = 1024 * 1024
_CHUNK = 1024 * 1024


def inflate_allowance(compressed_bytes: int, limits: Limits) -> int:
    """How many bytes an archive of ``compressed_bytes`` may inflate to under ``limits``."""
    if limits.max_inflate_ratio <= 0:
        return limits.max_inflated_bytes
    by_ratio = max(INFLATE_FLOOR, limits.max_inflate_ratio * compressed_bytes)
    return min(limits.max_inflated_bytes, by_ratio)


class _Inflating(io.RawIOBase):
    """The inflated bytes of a gzip file, counted: reading past ``allowance`` raises, one byte over.

    ``tick`` runs once per chunk (a deadline check), so a slow inflate is stopped too.
    """

    def __init__(self, packed: gzip.GzipFile, allowance: int, source: str,
                 tick: Callable[[], None]) -> None:
        self._packed, self._allowance, self._source, self._tick = packed, allowance, source, tick
        self.inflated = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._tick()
        # never ask for more than one byte past the allowance: the bomb stops there
        want = min(len(buffer), _CHUNK, self._allowance - self.inflated + 1)
        data = self._packed.read(want)
        self.inflated += len(data)
        if self.inflated > self._allowance:
            raise FlistTooCostly(
                f"{self._source}: the archive inflates to more than {self._allowance} bytes "
                "(the limit for an archive of this size); refusing it as a decompression bomb"
            )
        buffer[: len(data)] = data
        return len(data)


@dataclass(frozen=True)
class Unpacked:
    """The two things a v1 archive may hold: its database (copied out) and its router.yaml text."""

    database: Path
    router_text: str | None


def _no_deadline() -> None:
    return None


def unpack(path: Path, into: Path, limits: Limits, tick: Callable[[], None] = _no_deadline) -> Unpacked:
    """Check every member of the archive at ``path``; copy its database into the directory ``into``.

    The whole archive may inflate to :func:`inflate_allowance` bytes; ``tick`` is called per chunk.
    """
    source = str(path)
    database: Path | None = None
    router_text: str | None = None
    max_database_bytes = limits.max_metadata_bytes
    try:
        with (
            gzip.GzipFile(path, mode="rb") as packed,
            _Inflating(packed, inflate_allowance(path.stat().st_size, limits), source, tick) as raw,
            io.BufferedReader(raw, _CHUNK) as inflated,
            # a stream ("r|"): members are read once, in order, through the counter
            tarfile.open(fileobj=inflated, mode="r|") as archive,
        ):
            for member in archive:
                name = _checked_name(member, source)
                if name is None:
                    continue
                if name == ROUTER_MEMBER:
                    if router_text is not None:
                        raise _member_error(source, member.name, "appears twice")
                    router_text = _read_router(archive, member, source)
                    continue
                if database is not None:
                    raise _member_error(source, member.name, "appears twice")
                database = _copy_database(archive, member, into / DB_MEMBER, max_database_bytes, source)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FlistError(f"{source}: not a readable v1 flist (tar.gz): {exc}") from exc
    except OSError as exc:
        raise FlistError(f"{source}: cannot read v1 flist: {exc}") from exc
    if database is None:
        raise FlistError(f"{source}: v1 flist has no {DB_MEMBER} member")
    return Unpacked(database, router_text)


def _member_error(source: str, name: str, why: str) -> HostileFlist:
    return HostileFlist(f"{source}: archive member {name!r}: {why}")


def _checked_name(member: tarfile.TarInfo, source: str) -> str | None:
    """The member's name when it is one we take (a regular database or router file), None for the
    archive's root directory; anything else is hostile."""
    raw = member.name
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if raw.startswith("/") or ".." in raw.split("/") or "\0" in raw:
        raise _member_error(source, raw, "path traversal (absolute or '..') is not allowed")
    if not parts:
        if not member.isdir():
            raise _member_error(source, raw, "the archive root must be a directory")
        return None
    name = "/".join(parts)
    if name not in (DB_MEMBER, ROUTER_MEMBER):
        raise _member_error(
            source, raw, f"unexpected member; a v1 flist holds only {DB_MEMBER} and {ROUTER_MEMBER}"
        )
    if not member.isreg():
        raise _member_error(source, raw, "must be a regular file")
    return name


def _read_router(archive: tarfile.TarFile, member: tarfile.TarInfo, source: str) -> str:
    if member.size > _MAX_ROUTER_BYTES:
        raise _member_error(source, member.name, f"{member.size} bytes, more than {_MAX_ROUTER_BYTES}")
    handle = archive.extractfile(member)
    assert handle is not None  # a regular member always has content
    return handle.read(_MAX_ROUTER_BYTES + 1).decode("utf-8", "replace")


def _copy_database(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path, max_bytes: int,
                   source: str) -> Path:
    if member.size > max_bytes:
        raise _member_error(source, member.name, f"{member.size} bytes, more than the {max_bytes} allowed")
    handle = archive.extractfile(member)
    assert handle is not None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(handle, out, _CHUNK)
    return target


def pack(path: Path, database: bytes, router_text: str | None) -> None:
    """Write the archive atomically; byte-identical for the same input (fixed times and owners)."""
    with (
        atomic_writer(path) as out,
        # zlib's default level: on a 2,000-file flist level 9 took 48 ms to deflate, level 6 9 ms,
        # for a file 3 % larger (a pack's time counts, issue 19)
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as packed,
        tarfile.open(fileobj=packed, mode="w", format=tarfile.GNU_FORMAT) as archive,
    ):
        _add_member(archive, "./", None)
        _add_member(archive, f"./{DB_MEMBER}", database)
        if router_text is not None:
            _add_member(archive, f"./{ROUTER_MEMBER}", router_text.encode())


def _add_member(archive: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(info)
    else:
        info.mode, info.size = 0o644, len(data)
        archive.addfile(info, io.BytesIO(data))
