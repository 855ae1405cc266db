"""The fixed facts both sides of release authenticity rely on, as code (issue 15's design).

Folder and file names of a TUF repository, role names and default expiries, the target paths
(plain names, validated the same way by the repository that signs and the node that follows), the
``{"zos": {...}}`` custom field of every target, and the URLs where our hub and a release server
serve the metadata and targets. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import quote

from zos_upgrade.trust.errors import InvalidTargetPath, TrustError
from zos_upgrade.versions import InvalidVersion, Version, parse_version, version_from_name

__all__ = [
    "CUSTOM_KEY",
    "DEFAULT_EXPIRY",
    "FLIST_SUFFIXES",
    "HUB_STORE_DIR",
    "KEYS_DIR",
    "LATEST",
    "MAX_ROLLOUT_BYTES",
    "MAX_TARGET_PATH_BYTES",
    "METADATA_DIR",
    "PUBLISHER_TUF_DIR",
    "RENEWAL_WINDOW",
    "ROLES",
    "ROLLOUT_KEY",
    "TOP_LEVEL_ROLES",
    "Kind",
    "MetadataFileName",
    "ZosTarget",
    "flist_custom",
    "hashed_target_name",
    "hub_metadata_url",
    "hub_targets_url",
    "link_custom",
    "metadata_filename",
    "parse_metadata_filename",
    "publisher_metadata_url",
    "publisher_targets_url",
    "read_custom",
    "release_custom",
    "release_path_version",
    "split_hashed_target_name",
    "target_version",
    "validate_flist_target",
    "validate_release_target",
    "validate_target_path",
]

# -- folders ---------------------------------------------------------------------------------------
# `trust init --dir DIR`: DIR/metadata/ is exactly what a static server serves; DIR/keys/ holds the
# private keys (unless --keys puts them elsewhere: root keys belong offline)
METADATA_DIR = "metadata"
KEYS_DIR = "keys"
# our hub stores repo R's metadata under <storage root>/.tuf/R/metadata/ (a hidden name is never
# a repository: the hub refuses names starting with '.')
HUB_STORE_DIR = ".tuf"
# a release tree DIR keeps its TUF repository's metadata in DIR/tuf/metadata/
PUBLISHER_TUF_DIR = "tuf"

# -- roles and expiry ------------------------------------------------------------------------------
TOP_LEVEL_ROLES = ("root", "targets", "snapshot", "timestamp")
ROLES = TOP_LEVEL_ROLES
Role = Literal["root", "targets", "snapshot", "timestamp"]

DEFAULT_EXPIRY: Mapping[str, timedelta] = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
}
# a role is "due" (status says so, the hub's online key re-signs it) once it expires within this
# window: about a third of a short lifetime, so an hourly cron or the hub's task has many chances to
# renew a 1-day timestamp before any node sees it expired
RENEWAL_WINDOW: Mapping[str, timedelta] = {
    "root": timedelta(days=60),
    "targets": timedelta(days=14),
    "snapshot": timedelta(days=2),
    "timestamp": timedelta(hours=8),
}

# -- target paths ----------------------------------------------------------------------------------
MAX_TARGET_PATH_BYTES = 255  # one file name of one hub repository
FLIST_SUFFIXES = (".flist", ".fl")
LATEST = "latest"  # the channel of a release tree


def validate_target_path(path: object, what: str = "target path") -> str:
    """Return ``path`` if it is one plain name, else raise :class:`InvalidTargetPath`.

    The same rules as the hub's names: not empty, at most 255 bytes, no ``/`` or ``\\``, no ``..``,
    no leading ``.``, no control character, no ``%``. A target path is a file name inside one
    repository, so the node can never be made to write or ask for anything outside it.
    """
    if not isinstance(path, str) or not path:
        raise InvalidTargetPath(
            f"{what} is empty (expected a plain name of 1 to {MAX_TARGET_PATH_BYTES} bytes)"
        )
    size = len(path.encode("utf-8", "surrogatepass"))
    shown = path if len(path) <= 80 else path[:77] + "..."
    if size > MAX_TARGET_PATH_BYTES:
        raise InvalidTargetPath(f"{what} is {size} bytes long (at most {MAX_TARGET_PATH_BYTES})")
    if "/" in path or "\\" in path:
        raise InvalidTargetPath(f"{what} {shown!r} contains a path separator (expected a plain name)")
    if ".." in path:
        raise InvalidTargetPath(f"{what} {shown!r} contains '..'")
    if path.startswith("."):
        raise InvalidTargetPath(f"{what} {shown!r} starts with '.' (hidden names are reserved)")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise InvalidTargetPath(f"{what} {shown!r} contains a NUL or control character")
    if "%" in path:
        raise InvalidTargetPath(f"{what} {shown!r} contains '%' (expected a plain, unescaped name)")
    return path


def validate_flist_target(path: object, what: str = "flist target") -> str:
    """A hub-mode target path: a plain name ending in ``.flist`` or ``.fl``."""
    name = validate_target_path(path, what)
    if not name.endswith(FLIST_SUFFIXES):
        raise InvalidTargetPath(f"{what} {name!r} is not an flist name (expected it to end in .flist or .fl)")
    return name


def validate_release_target(path: object, what: str = "release target") -> str:
    """A publisher-mode target path: a strict semver version text, or the channel ``latest``."""
    name = validate_target_path(path, what)
    if name != LATEST:
        release_path_version(name)
    return name


def release_path_version(path: str) -> Version:
    """The version a publisher-mode release target names (its path is the version text)."""
    try:
        return parse_version(path)
    except InvalidVersion as exc:
        raise InvalidTargetPath(f"release target {path!r} is not a semver version: {exc}") from exc


def target_version(flist_name: str) -> Version:
    """The version of a hub-mode release target, read from its flist name as the hub client does.

    One source of truth: the version is never stored in the metadata separately.
    """
    try:
        return version_from_name(flist_name)
    except InvalidVersion as exc:
        raise InvalidTargetPath(str(exc)) from exc


# -- consistent-snapshot target names (hub URLs) ---------------------------------------------------
_SHA256 = re.compile(r"[0-9a-f]{64}")


def hashed_target_name(name: str, sha256: str) -> str:
    """``<sha256>.<name>``: the file name ngclient asks for when ``consistent_snapshot`` is on."""
    validate_target_path(name)
    if not _SHA256.fullmatch(sha256):
        raise InvalidTargetPath(f"sha256 {sha256!r} is not 64 lowercase hex digits")
    return f"{sha256}.{name}"


def split_hashed_target_name(hashname: str) -> tuple[str, str]:
    """``<sha256>.<name>`` -> ``(sha256, name)``, both validated; :class:`InvalidTargetPath` otherwise."""
    digest, dot, name = hashname.partition(".")
    if not dot or not _SHA256.fullmatch(digest):
        raise InvalidTargetPath(
            f"target file {hashname[:120]!r} is not '<sha256>.<name>' (consistent-snapshot name)"
        )
    return digest, validate_target_path(name)


# -- metadata file names ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MetadataFileName:
    """What a metadata file name says: the role, and the version for ``N.role.json`` names."""

    role: str
    version: int | None

    @property
    def filename(self) -> str:
        return metadata_filename(self.role, self.version)


_VERSIONED = re.compile(r"([1-9][0-9]{0,18})\.(root|targets|snapshot)\.json")


def metadata_filename(role: str, version: int | None = None) -> str:
    """``N.role.json`` (consistent snapshot) or ``role.json`` (root's latest copy, timestamp)."""
    if role not in TOP_LEVEL_ROLES:
        raise TrustError(f"role {role!r} is not one of {', '.join(TOP_LEVEL_ROLES)}")
    if version is None:
        return f"{role}.json"
    if role == "timestamp":
        raise TrustError("timestamp metadata has no versioned file name (always timestamp.json)")
    return f"{version}.{role}.json"


def parse_metadata_filename(filename: str) -> MetadataFileName:
    """The role and version a served metadata file name stands for, or :class:`InvalidTargetPath`.

    Accepted: ``N.root.json``, ``N.targets.json``, ``N.snapshot.json``, ``root.json``,
    ``timestamp.json`` — the files ``DIR/metadata/`` holds (``consistent_snapshot`` is on).
    """
    if filename in ("root.json", "timestamp.json"):
        return MetadataFileName(filename[: -len(".json")], None)
    match = _VERSIONED.fullmatch(filename)
    if match is None:
        raise InvalidTargetPath(
            f"metadata file {filename[:120]!r} is not one of N.root.json, N.targets.json, "
            "N.snapshot.json, root.json, timestamp.json"
        )
    return MetadataFileName(match.group(2), int(match.group(1)))


# -- the custom field of a target ------------------------------------------------------------------
CUSTOM_KEY = "zos"
# a phased rollout plan, inside the zos object: ``{"zos": {..., "rollout": {plan document}}}``. The
# trust layer only checks it is a JSON object of bounded size; what a plan may say is the rollout
# package's (a peer of this one): the CLI validates it before signing, the node before obeying it
ROLLOUT_KEY = "rollout"
MAX_ROLLOUT_BYTES = 16 * 1024  # a plan of 100 steps is ~4 KB
Kind = Literal["flist", "link", "release"]
_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ZosTarget:
    """The ``{"zos": {...}}`` custom field of one target, read and checked.

    ``kind`` is ``flist`` (a hub release file; ``md5`` is the hub's name for it), ``link`` (a hub
    link or the ``latest`` channel; ``link`` names the target it points to, which carries the same
    length and hashes) or ``release`` (a publisher-mode release; ``flist`` is the URL of its flist
    file, ``md5`` its md5). ``rollout``: the phased rollout plan signed with the target (its JSON
    document, not validated here: see :data:`ROLLOUT_KEY`), None without one.
    """

    kind: Kind
    md5: str | None = None
    link: str | None = None
    flist: str | None = None
    rollout: Mapping[str, Any] | None = field(default=None, hash=False, compare=True)


def _with_rollout(zos: dict[str, Any], rollout: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    if rollout is not None:
        zos[ROLLOUT_KEY] = dict(_check_rollout(rollout, where))
    return {CUSTOM_KEY: zos}


def flist_custom(md5: str, rollout: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The custom field of a hub release flist file (and its rollout plan, if any)."""
    return _with_rollout({"kind": "flist", "md5": _check_md5(md5, "flist")}, rollout, "flist")


def link_custom(link: str, rollout: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The custom field of a link / channel target pointing at target ``link`` (and the rollout plan
    of that link move, if any)."""
    zos = {"kind": "link", "link": validate_target_path(link, "link target")}
    return _with_rollout(zos, rollout, link)


def release_custom(flist_url: str, md5: str, rollout: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The custom field of a publisher-mode release target: its flist URL (signed) and md5."""
    zos = {"kind": "release", "flist": _check_url(flist_url), "md5": _check_md5(md5, "release")}
    return _with_rollout(zos, rollout, "release")


def read_custom(custom: Mapping[str, Any], path: str = "target") -> ZosTarget:
    """Read a target's custom field; :class:`TrustError` if it is not one of the three kinds."""
    if not isinstance(custom, Mapping):
        raise TrustError(f"target {path!r}: custom field is {type(custom).__name__}, expected an object")
    zos = custom.get(CUSTOM_KEY)
    if not isinstance(zos, Mapping):
        raise TrustError(f"target {path!r} has no {CUSTOM_KEY!r} custom object (not a zos-upgrade target)")
    kind = zos.get("kind")
    plan = zos.get(ROLLOUT_KEY)
    rollout = None if plan is None else _check_rollout(plan, path)
    if kind == "flist":
        return ZosTarget("flist", md5=_check_md5(zos.get("md5"), path), rollout=rollout)
    if kind == "link":
        return ZosTarget("link", link=validate_target_path(zos.get("link"), f"link of target {path!r}"),
                         rollout=rollout)
    if kind == "release":
        return ZosTarget("release", md5=_check_md5(zos.get("md5"), path), flist=_check_url(zos.get("flist")),
                         rollout=rollout)
    raise TrustError(f"target {path!r}: kind {kind!r} is not one of 'flist', 'link', 'release'")


def _check_rollout(value: object, where: str) -> Mapping[str, Any]:
    """A rollout plan's shape as far as this layer knows it: a JSON object of bounded size."""
    if not isinstance(value, Mapping):
        raise TrustError(f"target {where!r}: {ROLLOUT_KEY} is {type(value).__name__}, expected a JSON object "
                         "(a rollout plan document)")
    if not _canonical(value):
        raise TrustError(f"target {where!r}: {ROLLOUT_KEY} holds a fractional number or a value JSON "
                         "has no canonical form for (TUF signs canonical JSON: whole numbers, strings, "
                         "lists, objects)")
    try:
        size = len(json.dumps(value, separators=(",", ":")))
    except (TypeError, ValueError) as exc:
        raise TrustError(f"target {where!r}: {ROLLOUT_KEY} is not a JSON document: {exc}") from exc
    if size > MAX_ROLLOUT_BYTES:
        raise TrustError(f"target {where!r}: {ROLLOUT_KEY} is {size} bytes of JSON "
                         f"(at most {MAX_ROLLOUT_BYTES})")
    return value


def _canonical(value: object, depth: int = 0) -> bool:
    """``value`` can be signed: canonical JSON (securesystemslib) has no floats."""
    if depth > 8:
        return False
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _canonical(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_canonical(v, depth + 1) for v in value)
    return False


def _check_md5(value: object, where: str) -> str:
    if not isinstance(value, str) or not _MD5.fullmatch(value):
        raise TrustError(f"target {where!r}: md5 {value!r} is not 32 lowercase hex digits")
    return value


def _check_url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")) or len(value) > 2048:
        raise TrustError(f"flist URL {str(value)[:120]!r} is not an http(s) URL of at most 2048 characters")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value):
        raise TrustError(f"flist URL {value[:120]!r} contains a space or control character")
    return value


# -- URLs ------------------------------------------------------------------------------------------
def _base(url: str) -> str:
    return url.rstrip("/")


def _repo_segment(repo: str) -> str:
    validate_target_path(repo, "repository")
    return quote(repo, safe=":@+,;=")


def hub_metadata_url(hub: str, repo: str) -> str:
    """``<hub>/tuf/<repo>/metadata/``: ngclient's ``metadata_base_url`` for a hub repository."""
    return f"{_base(hub)}/tuf/{_repo_segment(repo)}/metadata/"


def hub_targets_url(hub: str, repo: str) -> str:
    """``<hub>/tuf/<repo>/targets/``: ngclient's ``target_base_url`` (``<sha256>.<name>`` files)."""
    return f"{_base(hub)}/tuf/{_repo_segment(repo)}/targets/"


def publisher_metadata_url(publisher: str) -> str:
    """``<publisher>/tuf/metadata/``: the metadata of a release tree, served by the release server."""
    return f"{_base(publisher)}/tuf/metadata/"


def publisher_targets_url(publisher: str) -> str:
    """``<publisher>/tuf/targets/``: ngclient needs a target base; release flists are fetched from
    the signed ``flist`` URL of each release target instead."""
    return f"{_base(publisher)}/tuf/targets/"
