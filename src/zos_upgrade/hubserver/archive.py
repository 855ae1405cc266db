"""A ``.tar.gz`` upload unpacked for the hub to make an flist of it (``POST /api/flist/me/upload``), with
every hostile archive refused whole before or while it is unpacked.

The real 0-hub runs ``tar -xpf`` on the upload and ``zflist putdir`` on the result. Here each member is
checked before it is written, and the first bad one refuses the archive:

- a name that is absolute or has a ``..`` part, or a member written through a symlink the archive
  made earlier (its parent folder resolves outside the tree);
- a device file or a FIFO (a release tree's ``/dev`` is made on the node, never shipped);
- a hard link to an absolute name, a ``..`` name, or a name not yet unpacked;
- a symlink whose relative target climbs out of the tree (an absolute target is kept: in an flist it
  names a path inside the release root, as on the node);
- a bomb: more than ``max_inflated_bytes`` of tar stream, or a stream more than ``max_inflate_ratio``
  times the compressed upload once past 16 MiB; and a deadline on the whole unpack.

Modes (setuid bits included) and times are kept as the archive has them, like ``tar -p``; owners are
the hub process's unless it runs as root (the same as the real hub's ``tar``).
"""

from __future__ import annotations

import gzip
import os
import posixpath
import tarfile
import time
import zlib
from pathlib import Path
from typing import IO, Protocol

from zos_upgrade.hub.models import HubError

__all__ = ["ArchiveLimits", "ArchiveRefused", "unpack_archive"]

_RATIO_FLOOR = 16 * 1024 * 1024  # below this, any ratio is fine (a tar of small text files compresses well)


class ArchiveRefused(HubError):
    """The uploaded archive is not a gzip tar, or holds something the hub does not unpack: HTTP 400."""


class ArchiveLimits:
    def __init__(self, max_inflated_bytes: int, max_inflate_ratio: int, max_seconds: float) -> None:
        self.max_inflated_bytes = max_inflated_bytes
        self.max_inflate_ratio = max_inflate_ratio
        self.max_seconds = max_seconds


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _BoundedStream:
    """The decompressed tar stream, refused once it passes the limits (checked as it is read)."""

    def __init__(self, inner: _Readable, compressed: int, limits: ArchiveLimits, deadline: float) -> None:
        self._inner = inner
        self._compressed = max(compressed, 1)
        self._limits = limits
        self._deadline = deadline
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._inner.read(size if size >= 0 else 1 << 20)
        except (OSError, EOFError, zlib.error) as exc:
            raise ArchiveRefused(f"archive is not a valid .tar.gz: {exc}") from exc
        self.read_bytes += len(data)
        limits = self._limits
        if self.read_bytes > limits.max_inflated_bytes:
            raise ArchiveRefused(
                f"archive inflates to more than {limits.max_inflated_bytes} bytes (the hub's limit)"
            )
        if self.read_bytes > _RATIO_FLOOR and self.read_bytes > limits.max_inflate_ratio * self._compressed:
            raise ArchiveRefused(
                f"archive inflates more than {limits.max_inflate_ratio} times its {self._compressed} "
                "compressed bytes (a decompression bomb?)"
            )
        if time.monotonic() > self._deadline:
            raise ArchiveRefused(f"archive took longer than {limits.max_seconds:g} s to unpack")
        return data


def unpack_archive(source: IO[bytes], compressed: int, dest: Path, limits: ArchiveLimits) -> int:
    """Unpack the ``.tar.gz`` ``source`` (``compressed`` bytes) into the empty folder ``dest``; returns
    the number of members. Raises :class:`ArchiveRefused` at the first hostile member."""
    deadline = time.monotonic() + limits.max_seconds
    stream = _BoundedStream(gzip.GzipFile(fileobj=source, mode="rb"), compressed, limits, deadline)
    root = os.path.realpath(dest)
    count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                _check(member, root)
                archive.extract(member, root, set_attrs=True, filter="fully_trusted")
                count += 1
    except tarfile.TarError as exc:
        raise ArchiveRefused(f"archive is not a valid .tar.gz: {exc}") from exc
    except OSError as exc:
        raise ArchiveRefused(f"archive member could not be unpacked: {exc.strerror or exc}") from exc
    return count


def _check(member: tarfile.TarInfo, root: str) -> None:
    name = member.name
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise ArchiveRefused(f"archive member {name!r}: absolute names and '..' are refused")
    if not parts:
        if member.isdir():
            return  # "./" itself
        raise ArchiveRefused(f"archive member {name!r} has no name")
    if member.ischr() or member.isblk() or member.isfifo():
        raise ArchiveRefused(f"archive member {name!r} is a device file or FIFO: refused")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ArchiveRefused(f"archive member {name!r} is of an unknown type: refused")
    # the folder the member goes into must be inside the tree as it now is on disk: an earlier
    # symlink member cannot be written through
    parent = os.path.realpath(os.path.join(root, *parts[:-1]))
    if parent != root and not parent.startswith(root + os.sep):
        raise ArchiveRefused(f"archive member {name!r} would be written through a link out of the tree")
    if os.path.islink(os.path.join(root, *parts)):
        # writing a file over a symlink would write where the link points (tar follows it)
        raise ArchiveRefused(f"archive member {name!r} replaces a symlink the archive made: refused")
    if member.islnk():
        target = [p for p in member.linkname.split("/") if p not in ("", ".")]
        if member.linkname.startswith("/") or ".." in target or not target:
            raise ArchiveRefused(f"archive hard link {name!r} -> {member.linkname!r}: refused")
        real = os.path.realpath(os.path.join(root, *target))
        if not real.startswith(root + os.sep) or not os.path.isfile(real):
            raise ArchiveRefused(
                f"archive hard link {name!r} -> {member.linkname!r}: no such file in the tree"
            )
    if member.issym() and not member.linkname.startswith("/"):
        depth = len(parts) - 1
        for part in member.linkname.split("/"):
            if part == "..":
                depth -= 1
                if depth < 0:
                    raise ArchiveRefused(
                        f"archive symlink {name!r} -> {member.linkname!r} points out of the tree"
                    )
            elif part not in ("", "."):
                depth += 1
    if member.issym() and posixpath.normpath("/" + "/".join(parts)) == "/":
        raise ArchiveRefused(f"archive symlink {name!r} replaces the tree's root")
