"""The verified release: the one object a release source hands to the Upgrader (SPEC 15).

A *release source* (the hub client, a release server, a local file, the coming TUF repository)
takes a candidate it found — a hub flist, a signed release object, a file an operator named —
downloads its flist file onto the node and checks those bytes the source's own way (the md5 the
hub announces, the signed blake2b-256, ...). What comes out is a :class:`VerifiedRelease`; the
Upgrader installs that and never looks at where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from zos_upgrade.errors import ZosUpgradeError

__all__ = [
    "FetchFailed",
    "ReleaseRejected",
    "ReleaseSource",
    "Target",
    "UnusableRelease",
    "VerificationFailed",
    "VerifiedRelease",
]

# what a release installs: the node's own release (the boot flist), or one bins package
Target = Literal["boot", "bin"]


class ReleaseRejected(ZosUpgradeError):
    """A source could not vouch for a candidate (download failed, bytes or signature do not match)."""


class FetchFailed(ReleaseRejected):
    """The candidate's flist file could not be fetched or stored (network, hub, disk); see the cause."""


class VerificationFailed(ReleaseRejected):
    """The fetched flist file is not the one the source vouches for (e.g. not the signed hash)."""


class UnusableRelease(ReleaseRejected):
    """The candidate cannot be installed as described (no pinned hash, no usable flist name...)."""


@dataclass(frozen=True)
class VerifiedRelease:
    """A release whose flist file is on this node and was checked by the source that produced it.

    ``flist`` is the file (named by its md5 in the downloads directory); every block it names is
    then pinned by the flist itself, so this check covers every byte that gets installed.
    """

    target: Target
    fqdn: str            # ``repo/name`` as the boot files and manifests record it
    version: str         # semver text ("0.0.0" for a bins package whose name carries none)
    source: str          # where it was found (hub fqdn, flist URL, file path): journal and logs
    flist: Path          # the checked flist file on this node
    md5: str             # md5 of that file: the mount's name, the boot files' md5
    verified_by: str     # what vouched for the bytes, e.g. "hub md5", "ed25519 signature"
    # the boot-file info document (the /light shape) recorded in the manifest
    info: dict[str, Any] = field(default_factory=dict)
    # where blocks live that the flist's own store routes cannot serve (e.g. the hub's /blocks)
    block_store: str | None = None

    @property
    def key(self) -> str:
        """The manifest this release replaces: ``boot``, or the bins package's fqdn."""
        return "boot" if self.target == "boot" else self.fqdn


Candidate = TypeVar("Candidate", contravariant=True)


class ReleaseSource(Protocol[Candidate]):
    """Turns a candidate of one kind into a :class:`VerifiedRelease`, or raises ReleaseRejected."""

    async def verify(self, candidate: Candidate, target: Target) -> VerifiedRelease: ...
