"""What a release server publishes (SPEC 7): the ``Publisher`` protocol, the ``Upgrade`` object, errors.

A release server answers three questions: which versions exist (``versions``), which one is the
newest (``latest``) and what a version is made of (``<version>``: an :class:`Upgrade`). This module
holds the wire model and its validation; signatures live in :mod:`.signing`, the network client in
:mod:`.http`, the writer of a release tree in :mod:`.tree`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import msgspec

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.versions import InvalidVersion, Version, parse_version

__all__ = [
    "INDEX_MAX_BYTES",
    "BadSignature",
    "DuplicateVersions",
    "HashMismatch",
    "InvalidAnswer",
    "InvalidKey",
    "LatestNotListed",
    "Publisher",
    "PublisherError",
    "ReleaseExists",
    "ReplayedRelease",
    "UnknownKey",
    "UnsignedRelease",
    "Upgrade",
    "check_latest_listed",
    "check_upgrade_fields",
    "check_versions",
    "decode_latest",
    "decode_upgrade",
    "decode_versions",
]

T = TypeVar("T")

INDEX_MAX_BYTES = 1 << 20  # versions, latest and release objects are tiny; a MiB is generous

_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_FIELD = 4096


class PublisherError(ZosUpgradeError):
    """A release server (or a release tree) said something we refuse to act on."""


class InvalidAnswer(PublisherError):
    """A ``versions``, ``latest`` or ``<version>`` document is not what the protocol allows."""


class DuplicateVersions(InvalidAnswer):
    """``versions`` names the same version twice."""


class LatestNotListed(InvalidAnswer):
    """``latest`` names a version that ``versions`` does not list."""


class UnsignedRelease(PublisherError):
    """A release object carries no signature (or no hash to pin the flist) while verification is on."""


class UnknownKey(PublisherError):
    """A release object is signed by a key that is not among the trusted ones."""


class BadSignature(PublisherError):
    """A release object's signature does not verify with any trusted key."""


class ReplayedRelease(BadSignature):
    """A release object signed for one version is served as another one."""


class HashMismatch(PublisherError):
    """The downloaded flist is not the one the release object pins by its ``hash``."""


class InvalidKey(PublisherError):
    """A key file is unreadable, not PEM, or not an ed25519 key."""


class ReleaseExists(PublisherError):
    """``release add`` was asked to publish a version the tree already has."""


class Upgrade(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    """One published release: where its flist is, and what pins it.

    ``flist``, ``transaction_id`` and ``signature`` are the original's fields; ``version``, ``hash``
    (blake2b-256 hex of the flist file) and ``key_id`` (which key signed, see
    :func:`zos_upgrade.publisher.signing.key_id`) are ours; old clients ignore them. ``version`` may
    be absent in objects written by old tools: the client always verifies the signature against the
    version it asked for, so an object served under the wrong name cannot pass.
    """

    flist: str
    transaction_id: str = ""
    signature: str = ""
    hash: str = ""
    version: str = ""
    key_id: str = ""


class Publisher(Protocol):
    """Where a node learns about releases (the Go ``Publisher`` interface, async)."""

    async def get(self, version: Version) -> Upgrade:
        """The release object of ``version``."""
        ...

    async def latest(self) -> Version:
        """The newest published version."""
        ...

    async def list(self) -> list[Version]:
        """Every published version, in semver order."""
        ...


def _decode(data: bytes, kind: type[T], what: str, where: str) -> T:
    try:
        return msgspec.json.decode(data, type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidAnswer(f"{where}: {what} has the wrong shape: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidAnswer(f"{where}: {what} is not valid JSON: {exc}") from exc


def _version(text: str, what: str, where: str) -> Version:
    try:
        return parse_version(text)
    except InvalidVersion as exc:
        raise InvalidAnswer(f"{where}: {what}: {exc}") from exc


def check_versions(versions: Iterable[Version], where: str) -> list[Version]:
    """``versions`` sorted by semver precedence; raise :class:`DuplicateVersions` on a repeat."""
    ordered = sorted(versions)
    repeats = sorted({str(a) for a, b in itertools.pairwise(ordered) if a.compare(b) == 0})
    if repeats:
        raise DuplicateVersions(f"{where}: versions lists {', '.join(repeats)} more than once")
    return ordered


def check_latest_listed(latest: Version, versions: Iterable[Version], where: str) -> None:
    """Refuse a ``latest`` that ``versions`` does not list (a typo must not strand a fleet)."""
    if not any(latest.compare(listed) == 0 for listed in versions):
        raise LatestNotListed(f"{where}: latest is {latest}, which versions does not list")


def decode_versions(data: bytes, where: str) -> list[Version]:
    """Decode a ``versions`` document: a JSON list of distinct semver strings; sorted on return."""
    texts = _decode(data, list[str], "versions (expected a JSON list of semver strings)", where)
    return check_versions((_version(t, "versions entry", where) for t in texts), where)


def decode_latest(data: bytes, where: str) -> Version:
    """Decode a ``latest`` document: one JSON string, a semver version."""
    text = _decode(data, str, "latest (expected a JSON string holding a semver version)", where)
    return _version(text, "latest", where)


def decode_upgrade(data: bytes, where: str) -> Upgrade:
    """Decode a ``<version>`` document and check every field's form (not its signature)."""
    upgrade = _decode(data, Upgrade, "release object (expected a JSON object with a string 'flist')", where)
    check_upgrade_fields(upgrade, where)
    return upgrade


def check_upgrade_fields(upgrade: Upgrade, where: str) -> None:
    """Refuse fields whose form is wrong: the flist must be an http(s) URL, the hash 64 hex digits."""
    for name in ("flist", "transaction_id", "signature", "hash", "version", "key_id"):
        if len(getattr(upgrade, name)) > _MAX_FIELD:
            raise InvalidAnswer(f"{where}: field {name!r} is longer than {_MAX_FIELD} characters")
    parts = urlsplit(upgrade.flist)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidAnswer(f"{where}: 'flist' must be an http(s) URL, got {upgrade.flist!r}")
    if upgrade.hash and not _HEX64.fullmatch(upgrade.hash):
        raise InvalidAnswer(
            f"{where}: 'hash' must be 64 lowercase hex digits (blake2b-256), got {upgrade.hash[:80]!r}"
        )
    if upgrade.version:
        _version(upgrade.version, "field 'version'", where)
