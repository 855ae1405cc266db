"""The JSON form of an flist's info as the node's boot files hold it (SPEC 8).

The real bootstrap writes ``/tmp/flist.info`` (and each value of ``/tmp/bins.info``) as
``{"type", "updated", "md5", "name", "target"}``: no ``size``, ``target`` is ``null`` for a regular
flist, ``md5`` may be absent (a repository listing carries none) and the original Go upgrader wrote
``"hash"`` instead of ``"md5"`` and ``""`` for no target. We read all of these, in any field order,
strictly typed, and write the bootstrap's shape back (plus ``size``/``linktime`` when known, which
older readers ignore).
"""

from __future__ import annotations

from typing import Any

import msgspec

from zos_upgrade.hub.models import FlistInfo, FlistType, RepoEntry

__all__ = ["StoredInfo", "decode_info", "decode_info_map", "encode_info", "info_document"]


class StoredInfo(msgspec.Struct, forbid_unknown_fields=False):
    """One info object as found on disk; :meth:`to_flist_info` gives the hub's model."""

    name: str
    type: FlistType
    updated: int
    md5: str = ""
    hash: str = ""  # the Go upgrader's name for md5
    target: str | None = None
    size: int | str = 0  # listings give "12.3 KB": not a number we can use
    linktime: int | None = None

    def to_flist_info(self) -> FlistInfo:
        return FlistInfo(
            name=self.name,
            size=self.size if isinstance(self.size, int) else 0,
            updated=self.updated,
            type=self.type,
            md5=self.md5 or self.hash,
            target=self.target or None,
            linktime=self.linktime,
        )


def decode_info(data: bytes) -> FlistInfo:
    """Decode one info object; raises ``msgspec.ValidationError``/``DecodeError`` (callers add the where)."""
    return msgspec.json.decode(data, type=StoredInfo, strict=True).to_flist_info()


def decode_info_map(data: bytes) -> dict[str, FlistInfo]:
    """Decode a ``bins.info`` document: a JSON object ``"repo/name"`` -> info object."""
    stored = msgspec.json.decode(data, type=dict[str, StoredInfo], strict=True)
    return {key: value.to_flist_info() for key, value in stored.items()}


def info_document(info: FlistInfo | RepoEntry) -> dict[str, Any]:
    """The bootstrap's shape of ``info`` (field order as the bootstrap writes it)."""
    doc: dict[str, Any] = {
        "type": info.type,
        "updated": info.updated,
        "md5": info.md5 if isinstance(info, FlistInfo) else "",
        "name": info.name,
        "target": info.target,
    }
    if isinstance(info, FlistInfo):
        doc["size"] = info.size
    if info.linktime is not None:
        doc["linktime"] = info.linktime
    return doc


def encode_info(info: FlistInfo | RepoEntry) -> bytes:
    return msgspec.json.encode(info_document(info))
