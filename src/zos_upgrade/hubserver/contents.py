"""What is inside a stored flist, in the shapes the real hub answers with (it asks ``zflist``).

``GET /api/flist/<repo>/<name>`` is ``zflist find``: every entry but the root, walked depth-first
in stored order (a directory, then what it holds), with per-kind counts and ``fullsize``, the sum of
the regular files' sizes. ``/metadata`` is the v1 metadata table (JSON values) or the v2 tag table.
Parsing is delegated to the flist layer, which refuses hostile flists.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zos_upgrade.flist import Entry, EntryKind, open_flist

__all__ = ["ContentsCache", "flist_contents", "flist_metadata", "walk_like_zflist"]


def walk_like_zflist(entries: Iterable[Entry]) -> list[Entry]:
    """Order entries as ``zflist find`` prints them: depth first, children in stored order."""
    children: dict[str, list[Entry]] = {}
    for entry in entries:
        if entry.path != "/":
            children.setdefault(entry.parent, []).append(entry)
    ordered: list[Entry] = []
    stack: list[Entry] = list(reversed(children.get("/", [])))
    while stack:
        entry = stack.pop()
        ordered.append(entry)
        if entry.kind is EntryKind.DIR:
            stack.extend(reversed(children.get(entry.path, [])))
    return ordered


def flist_contents(path: Path) -> dict[str, Any]:
    """The ``zflist find`` object of the flist at ``path`` (raises FlistError on a bad flist)."""
    with open_flist(path) as reader:
        entries = walk_like_zflist(reader.entries())
    counts = {EntryKind.FILE: 0, EntryKind.LINK: 0, EntryKind.DIR: 0, EntryKind.SPECIAL: 0}
    fullsize = 0
    content = []
    for entry in entries:
        counts[entry.kind] += 1
        if entry.kind is EntryKind.FILE:
            fullsize += entry.size
        content.append({"size": entry.size, "path": entry.path})
    return {
        "content": content,
        "regular": counts[EntryKind.FILE],
        "symlink": counts[EntryKind.LINK],
        "directory": counts[EntryKind.DIR],
        "special": counts[EntryKind.SPECIAL],
        "failure": 0,
        "fullsize": fullsize,
    }


def flist_metadata(path: Path) -> dict[str, Any]:
    """``/metadata``: v1 metadata values are JSON text (decoded), v2 tags are plain strings."""
    with open_flist(path) as reader:
        tags = reader.tags()
        is_v1 = reader.format == "v1"
    if not is_v1:
        return dict(tags)
    out: dict[str, Any] = {}
    for key, value in tags.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


class ContentsCache:
    """Parsed answers keyed by the file's identity (inode, size, mtime): an flist is parsed once."""

    def __init__(self, size: int = 128) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
