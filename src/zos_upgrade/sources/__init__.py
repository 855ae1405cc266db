"""Release sources: each turns what it found (hub flist, signed release, file) into a verified release."""

from zos_upgrade.sources.base import (
    FetchFailed,
    ReleaseRejected,
    ReleaseSource,
    Target,
    UnusableRelease,
    VerificationFailed,
    VerifiedRelease,
)
from zos_upgrade.sources.hub import HubSource
from zos_upgrade.sources.publisher import PublisherSource

__all__ = [
    "FetchFailed",
    "HubSource",
    "PublisherSource",
    "ReleaseRejected",
    "ReleaseSource",
    "Target",
    "UnusableRelease",
    "VerificationFailed",
    "VerifiedRelease",
]
