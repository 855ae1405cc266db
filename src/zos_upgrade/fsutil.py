"""Durable file writes: temp name, fsync, rename, fsync the directory.

Every file the node depends on goes through here, so a crash at any instant leaves either the old
content or the new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "TEMP_MARK",
    "atomic_symlink",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_writer",
    "file_md5",
    "fsync_dir",
    "read_at_most",
    "sweep_temps",
    "temp_sibling",
    "write_all",
]

# Every temporary name we create carries this mark, so recovery can sweep leftovers of a crash.
TEMP_MARK = ".zu-tmp-"


def fsync_dir(path: Path | str) -> None:
    """fsync a directory so a rename or unlink inside it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_md5(path: Path | str) -> str:
    """The md5 (hex) of the file at ``path``, read in 1 MiB chunks: the name flist files go by."""
    import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_at_most(path: Path | str, limit: int) -> bytes | None:
    """Up to ``limit + 1`` bytes of the file at ``path`` (so a caller can tell it is too big), or None
    when there is no such file. One ``open`` and one ``read(2)``, no buffered file object: block
    stores and the block cache call this once per block. Other failures raise ``OSError``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.read(fd, limit + 1)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``write(2)`` until all of ``data`` is written (a regular file may take less per call)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def random_suffix() -> str:
    """8 random hex digits for a temporary name (not :mod:`secrets`: it loads OpenSSL for hmac)."""
    return os.urandom(4).hex()


def temp_sibling(path: Path) -> Path:
    """A fresh temporary name in the same directory as ``path`` (same file system, so rename is atomic)."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{random_suffix()}")


def sweep_temps(directory: Path | str) -> list[Path]:
    """Remove the temp files (names with ``TEMP_MARK``) that writers killed mid-write left directly in
    ``directory``; returns them. Call it only where no writer can be active (e.g. at start-up under
    the node's lock): a live writer's temp file would be removed under it."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if TEMP_MARK in entry.name and not entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    if removed:
        fsync_dir(directory)
    return removed


@contextlib.contextmanager
def atomic_writer(path: Path | str, mode: int = 0o644, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Write ``path`` through a temp file; on success fsync, rename over ``path``, fsync the directory.

    On any exception the temp file is removed and ``path`` is untouched. ``durable=False``: no
    fsync (a cache: readers see the old or the new whole file, a crash may leave either, or none).
    """
    target = Path(path)
    tmp = temp_sibling(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(target.parent)


def atomic_write_bytes(path: Path | str, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data``, durably unless ``durable=False`` (:func:`atomic_writer`)."""
    with atomic_writer(path, mode, durable=durable) as handle:
        handle.write(data)


def atomic_write_json(path: Path | str, obj: Any, mode: int = 0o644, *, indent: int | None = None) -> None:
    """Durably replace ``path`` with the JSON of ``obj`` (keys sorted, so output is stable)."""
    atomic_write_bytes(path, json.dumps(obj, sort_keys=True, indent=indent).encode(), mode)


def atomic_symlink(target: str, link: Path | str) -> None:
    """Point ``link`` at ``target`` by renaming a new symlink over it: readers never see it missing."""
    link_path = Path(link)
    tmp = temp_sibling(link_path)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(link_path.parent)
