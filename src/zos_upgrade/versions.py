"""Semver rules and the version-from-flist-name rule (SPEC section 3)."""

from __future__ import annotations

from semver import Version

from zos_upgrade.errors import ZosUpgradeError

__all__ = ["ZERO", "InvalidVersion", "Version", "parse_version", "try_version_from_name", "version_from_name"]

ZERO = Version(0, 0, 0)
_SUFFIXES = (".flist", ".fl")
_MAX_LEN = 256


class InvalidVersion(ZosUpgradeError, ValueError):
    """A string is not a strict semver 2.0 version."""


def parse_version(text: str) -> Version:
    """Parse a strict semver 2.0 string (no leading ``v``, no partial versions)."""
    if not isinstance(text, str):
        raise InvalidVersion(f"version must be a string, got {type(text).__name__}")
    if len(text) > _MAX_LEN:
        raise InvalidVersion(f"version string is {len(text)} characters long (at most {_MAX_LEN})")
    try:
        return Version.parse(text)
    except (ValueError, TypeError) as exc:
        raise InvalidVersion(
            f"{text!r} is not a semver 2.0 version (expected MAJOR.MINOR.PATCH[-pre][+build])"
        ) from exc


def version_from_name(name: str) -> Version:
    """The version an flist name carries: ``zos:development:v0.2.0.flist`` -> ``0.2.0``.

    Take the part after the last ``:``, strip the ``.flist``/``.fl`` suffix and a leading ``v``,
    then parse strictly.
    """
    if not isinstance(name, str) or not name:
        raise InvalidVersion(f"flist name {name!r} carries no version")
    tail = name.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    for suffix in _SUFFIXES:
        if tail.endswith(suffix):
            tail = tail[: -len(suffix)]
            break
    if tail.startswith("v"):
        tail = tail[1:]
    try:
        return parse_version(tail)
    except InvalidVersion as exc:
        raise InvalidVersion(f"flist name {name!r} carries no semver version ({tail!r} is not one)") from exc


def try_version_from_name(name: str) -> Version:
    """Like :func:`version_from_name`, but ``0.0.0`` where the name carries no version."""
    try:
        return version_from_name(name)
    except InvalidVersion:
        return ZERO
