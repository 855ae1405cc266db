"""Checks of TUF metadata files as the repository and the hub read them: rules, no I/O.

Everything is python-tuf's: parsing and field checks by ``Metadata.from_bytes``, signatures and
thresholds by ``Root.verify_delegate``. This module only says which check applies to which file
and turns python-tuf's exceptions into one :class:`TrustRepositoryError` naming the file.
"""

from __future__ import annotations

from typing import Any, TypeVar

from securesystemslib.exceptions import FormatError
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Signed, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from zos_upgrade.trust.errors import TrustError, TrustRepositoryError
from zos_upgrade.trust.layout import read_custom, validate_target_path

__all__ = [
    "check_follows",
    "check_root_successor",
    "check_signed_by_root",
    "check_targets_fields",
    "parse_metadata",
    "signed_of",
]

S = TypeVar("S", bound=Signed)
_CLASSES: dict[str, type[Signed]] = {
    "root": Root,
    "targets": Targets,
    "snapshot": Snapshot,
    "timestamp": Timestamp,
}


def parse_metadata(data: bytes, role: str, where: str) -> Metadata[Any]:
    """Parse ``data`` as TUF metadata of ``role``; any malformed field is a clear error."""
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except (DeserializationError, FormatError, ValueError, TypeError, KeyError) as exc:
        raise TrustRepositoryError(f"{where}: not valid TUF metadata: {exc}") from exc
    if md.signed.type != role:
        raise TrustRepositoryError(f"{where}: holds {md.signed.type!r} metadata, expected {role!r}")
    return md


def signed_of(md: Metadata[Any], kind: type[S]) -> S:
    """``md.signed`` as ``kind`` (the role was checked by :func:`parse_metadata`)."""
    signed = md.signed
    if not isinstance(signed, kind):
        raise TrustRepositoryError(f"metadata of type {signed.type!r} is not {kind.__name__}")
    return signed


def check_signed_by_root(root: Root, md: Metadata[Any], where: str) -> None:
    """``md`` carries its role's threshold of valid signatures by the keys ``root`` names for it."""
    role = md.signed.type
    try:
        root.verify_delegate(role, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        result = root.get_verification_result(role, md.signed_bytes, md.signatures)
        raise TrustRepositoryError(
            f"{where}: {role} signatures do not meet the threshold: {len(result.signed)} valid of "
            f"{result.threshold} needed (keys {', '.join(sorted(root.roles[role].keyids))}): {exc}"
        ) from exc


def check_root_successor(previous: Root | None, new: Metadata[Any], where: str) -> None:
    """A new root: signed by its own threshold and, unless it is version 1, by the previous root's
    threshold, with the version right after the previous one."""
    root = signed_of(new, Root)
    if previous is None:
        if root.version != 1:
            raise TrustRepositoryError(f"{where}: the first root must be version 1, not {root.version}")
    else:
        if root.version != previous.version + 1:
            raise TrustRepositoryError(
                f"{where}: root version {root.version} does not follow version {previous.version} "
                f"(expected {previous.version + 1})"
            )
        try:
            check_signed_by_root(previous, new, where + " (signed by the previous root's keys)")
        except TrustRepositoryError as exc:
            raise TrustRepositoryError(
                f"{exc}; a new root must be signed by the previous root's threshold"
            ) from exc
    check_signed_by_root(root, new, where + " (signed by its own keys)")
    if not root.consistent_snapshot:
        raise TrustRepositoryError(
            f"{where}: consistent_snapshot is off (this repository layout needs it on)"
        )


def check_follows(previous: Signed | None, new: Signed, where: str) -> None:
    """A new version of a non-root role is newer than the stored one (rollback refused)."""
    if previous is not None and new.version <= previous.version:
        raise TrustRepositoryError(
            f"{where}: {new.type} version {new.version} does not follow the stored version "
            f"{previous.version} (expected a higher version)"
        )


def check_targets_fields(targets: Targets, where: str) -> None:
    """Every target path is a plain name with a readable ``zos`` custom field; links name targets."""
    for path, target in targets.targets.items():
        try:
            validate_target_path(path)
            zos = read_custom(target.custom, path)
        except TrustError as exc:
            raise TrustRepositoryError(f"{where}: {exc}") from exc
        if "sha256" not in target.hashes:
            raise TrustRepositoryError(f"{where}: target {path!r} has no sha256 hash")
        if zos.kind == "link":
            linked = targets.targets.get(zos.link or "")
            if linked is None:
                raise TrustRepositoryError(
                    f"{where}: link {path!r} points at {zos.link!r}, which is not a target"
                )
            if (linked.length, linked.hashes) != (target.length, target.hashes):
                raise TrustRepositoryError(
                    f"{where}: link {path!r} does not carry the length and hashes of {zos.link!r}"
                )
