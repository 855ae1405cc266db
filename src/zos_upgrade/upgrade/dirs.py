"""Durable directory creation: a new directory is only as durable as its entry in its parent."""

from __future__ import annotations

import contextlib
from pathlib import Path

from zos_upgrade.fsutil import fsync_dir

__all__ = ["ensure_dir"]


def ensure_dir(path: Path) -> None:
    """``mkdir -p`` whose every new directory entry is fsynced into its parent (survives power loss)."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        fsync_dir(directory.parent)
