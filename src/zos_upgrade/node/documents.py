"""Reading one of the node's small JSON state files: bounded, strictly typed, errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import msgspec

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import read_at_most

__all__ = ["read_document"]

T = TypeVar("T")


def read_document(path: Path, kind: type[T], *, limit: int, expected: str, what: str,
                  error: type[ZosUpgradeError], hint: str = "") -> T | None:
    """``path`` decoded strictly as ``kind``, or None when there is no such file.

    Raises ``error`` when the file cannot be read, is over ``limit`` bytes ("expected ``expected``")
    or is not ``what``; ``hint`` (e.g. how to remove it) ends each of these messages.
    """
    try:
        data = read_at_most(path, limit)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data is None:
        return None
    if len(data) > limit:
        raise error(f"{path} is larger than {limit} bytes (expected {expected}){hint}")
    try:
        return msgspec.json.decode(data, type=kind, strict=True)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise error(f"{path} is not {what} ({exc}){hint}") from exc
