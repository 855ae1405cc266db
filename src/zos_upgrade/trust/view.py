"""What one ngclient refresh verified, as plain data: the signed targets and each role's version and
expiry (issue 19: an idle daemon reads its watchers' answers from here, without python-tuf).

A :class:`TrustView` is made from a :class:`~zos_upgrade.trust.client.TrustedRepo` right after its
refresh succeeded (in the refresh's child process, :mod:`zos_upgrade.trust.isolated`) and crosses to
the daemon as JSON. Nothing here verifies anything: it is ngclient's verified output, read the way
``TrustedRepo`` reads it (:func:`resolve_link` is the one rule both apply to links).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from zos_upgrade.trust.errors import TargetMismatch, TrustError, UnknownTarget
from zos_upgrade.trust.layout import ZosTarget, read_custom, validate_target_path

__all__ = ["SignedTarget", "TargetLike", "TrustView", "Trusted", "resolve_link"]


class TargetLike(Protocol):
    """What a watcher or a rollout plan reads of a signed target (TrustedTarget and SignedTarget)."""

    @property
    def path(self) -> str: ...
    @property
    def length(self) -> int: ...
    @property
    def hashes(self) -> dict[str, str]: ...
    @property
    def zos(self) -> ZosTarget: ...


class Trusted(Protocol):
    """What watchers, sources and rollout plans ask of a TUF repository: a ``TrustedRepo``, or the
    daemon's :class:`~zos_upgrade.trust.isolated.IsolatedTrust`."""

    @property
    def name(self) -> str: ...
    @property
    def metadata_url(self) -> str: ...
    def refresh(self) -> None: ...
    def target(self, path: str) -> TargetLike: ...
    def resolve_link(self, name: str) -> TargetLike: ...
    def releases(self) -> Sequence[TargetLike]: ...
    def versions(self) -> dict[str, int]: ...
    def close(self) -> None: ...


T = TypeVar("T", bound=TargetLike)


def resolve_link(name: str, target: Callable[[str], T], where: str) -> T:
    """The release the signed link ``name`` names (a plain release target resolves to itself).

    Refused when the link's signed length or hashes differ from the linked target's: both are in
    the same signed targets metadata, so a mismatch is a repository that must not be followed."""
    link = target(name)
    if link.zos.kind != "link":
        return link
    assert link.zos.link is not None  # read_custom guarantees it for a link
    linked = target(link.zos.link)
    if linked.zos.kind == "link":
        raise UnknownTarget(f"{where}: link {name!r} points at {link.zos.link!r}, itself a link "
                            "(a link must name a release)")
    if linked.length != link.length or linked.hashes != link.hashes:
        raise TargetMismatch(
            f"{where}: link {name!r} signs length {link.length} / sha256 {link.hashes.get('sha256', '')} but "
            f"its release {linked.path!r} is {linked.length} / {linked.hashes.get('sha256', '')} "
            f"[{TargetMismatch.attack}]")
    return linked


@dataclass(frozen=True)
class SignedTarget:
    """One target of the verified targets metadata: its signed length, hashes and zos field."""

    path: str
    length: int
    hashes: dict[str, str]
    zos: ZosTarget

    @property
    def sha256(self) -> str:
        return self.hashes.get("sha256", "")


@dataclass(frozen=True)
class TrustView:
    """The targets and roles of one successful refresh of repository ``name``.

    ``targets``: each signed target's path, length, hashes and custom field as ngclient verified
    them; the zos field is read at each look, as ``TrustedRepo`` reads it (same errors)."""

    name: str
    targets: dict[str, dict[str, Any]]
    roles: dict[str, dict[str, Any]]  # role -> {"version": int, "expires": ISO time}, as status shows

    def versions(self) -> dict[str, int]:
        return {role: int(info["version"]) for role, info in self.roles.items()}

    def earliest_expiry(self) -> datetime | None:
        """When the first of the trusted roles expires (None: no role recorded)."""
        times = [datetime.fromisoformat(str(info["expires"])) for info in self.roles.values()]
        return min(times) if times else None

    def target(self, path: str) -> SignedTarget:
        validate_target_path(path)
        found = self.targets.get(path)
        if found is None:
            raise UnknownTarget(
                f"{self.name}: {path!r} is not a target of the signed targets metadata "
                f"(v{self.versions().get('targets', '?')}): nobody signed it [{UnknownTarget.attack}]")
        return _signed(path, found)

    def resolve_link(self, name: str) -> SignedTarget:
        return resolve_link(name, self.target, self.name)

    def releases(self) -> list[SignedTarget]:
        """Every signed release (kind ``flist`` or ``release``), by path; links left out."""
        out = []
        for path in sorted(self.targets):
            try:
                signed = _signed(path, self.targets[path])
            except TrustError:
                continue  # a target that is not ours (no zos field) is nothing the node installs
            if signed.zos.kind in ("flist", "release"):
                out.append(signed)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "roles": self.roles, "targets": self.targets}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TrustView:
        targets = {str(path): {"length": int(entry["length"]), "hashes": dict(entry["hashes"]),
                               "custom": entry.get("custom") or {}}
                   for path, entry in dict(doc["targets"]).items()}
        return cls(str(doc["name"]), targets, dict(doc["roles"]))


def _signed(path: str, entry: Mapping[str, Any]) -> SignedTarget:
    path = validate_target_path(path)
    return SignedTarget(path, int(entry["length"]), dict(entry["hashes"]), read_custom(entry["custom"], path))
