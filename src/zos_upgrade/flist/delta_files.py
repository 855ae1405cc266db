"""The node's side of flist deltas: which kept flist files it offers as bases, and the rebuild.

A node keeps the flist files it installed under their md5 (``<state>/flists/<md5>``: the installed
release's and the previous one's, for rollback). Those are the bases it offers, newest first. The
rebuilt bytes are returned to the caller, which checks them like a whole download before it keeps
them (the hub's md5, or TUF's signed length and hashes).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from zos_upgrade.flist.delta import DeltaInvalid, apply_delta, read_header

__all__ = ["OFFERED_BASES", "delta_bases", "rebuild_from_delta"]

OFFERED_BASES = 4  # the installed release, the one before it, and a spare or two
_MD5 = re.compile(r"[0-9a-f]{32}")


def delta_bases(folder: Path, wanted_md5: str) -> list[Path]:
    """The md5-named regular files of ``folder`` other than ``wanted_md5``, newest first."""
    found: list[tuple[int, Path]] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name == wanted_md5 or not _MD5.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((st.st_mtime_ns, Path(entry.path)))
    found.sort(key=lambda item: item[0], reverse=True)
    return [path for _, path in found[:OFFERED_BASES]]


def rebuild_from_delta(delta: bytes, bases: list[Path], max_bytes: int) -> bytes:
    """The file ``delta`` rebuilds from the one of ``bases`` its header names (at most ``max_bytes``);
    raises :class:`DeltaInvalid` for a delta against anything else, or one that does not apply."""
    header, _ = read_header(delta)
    base = next((p for p in bases if p.name == header.base_md5), None)
    if base is None:
        raise DeltaInvalid(f"delta is from base {header.base_md5}, which the node did not offer")
    with open(base, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DeltaInvalid(f"base {base.name} is over the {max_bytes} bytes a delta may start from")
    return apply_delta(delta, data, max_bytes)
