"""The hub's wire objects (SPEC 6) and its errors.

Every answer of a hub is decoded into one of these structs with strict typing: a missing field, a
string where an integer belongs, or an unknown ``type`` is an error that names the field, not a
``KeyError`` three calls later. Field names and types follow what the real 0-hub sends.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import Struct

from zos_upgrade.errors import ZosUpgradeError

__all__ = [
    "ApiReply",
    "ContentEntry",
    "FlistContents",
    "FlistInfo",
    "FlistType",
    "HubAnswerInvalid",
    "HubError",
    "InvalidName",
    "RepoEntry",
    "Repository",
    "WriteRefused",
]

FlistType = Literal["regular", "symlink", "tag", "taglink"]


class HubError(ZosUpgradeError):
    """Something about a hub, its storage or its answers is wrong."""


class HubAnswerInvalid(HubError):
    """A hub answered, but not with what the API promises (bad JSON, a missing field, a bad md5...)."""


class InvalidName(HubError, ValueError):
    """A repository, flist or tag name that could escape its folder or is otherwise unusable."""


class WriteRefused(HubError):
    """The hub refused a write call (no or bad token, wrong repository, invalid upload...)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class FlistInfo(Struct):
    """``GET /api/flist/<repo>/<name>/light``: one flist, a symlink followed for size and updated."""

    name: str
    size: int
    updated: int
    type: FlistType
    md5: str
    target: str | None = None  # symlinks: the link text as stored, e.g. "v2.flist" or "../other/x.flist"
    linktime: int | None = None  # symlinks: the link's own mtime


class RepoEntry(Struct):
    """One item of ``GET /api/flist/<repo>``; ``size`` is a string such as ``"2.57 KB"``."""

    name: str
    size: str
    updated: int
    type: FlistType
    target: str | None = None  # cleaned: "../" removed, ".tag-" turned into "tags/"
    linktime: int | None = None


class ContentEntry(Struct):
    path: str
    size: int
    target: str | None = None


class FlistContents(Struct):
    """``GET /api/flist/<repo>/<name>``: the tree of an flist (what ``zflist find`` reports)."""

    regular: int
    symlink: int
    directory: int
    special: int
    failure: int
    fullsize: int
    content: list[ContentEntry]


class Repository(Struct):
    """One item of ``GET /api/repositories``."""

    name: str
    official: bool
    updated: int


class ApiReply(Struct):
    """The envelope of every write call and of JSON errors: ``{"status", "message"?, "payload"?}``."""

    status: Literal["success", "error"]
    message: str | None = None
    payload: dict[str, Any] | None = None
