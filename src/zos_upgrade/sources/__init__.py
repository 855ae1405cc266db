"""Release sources: each turns what it found (hub flist, signed release, file) into a verified release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zos_upgrade import lazy

if TYPE_CHECKING:
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

# name -> the submodule defining it: imported at first use (issue 19, an idle daemon's memory)
__getattr__ = lazy.exports(__name__, {
    "FetchFailed": "base",
    "ReleaseRejected": "base",
    "ReleaseSource": "base",
    "Target": "base",
    "UnusableRelease": "base",
    "VerificationFailed": "base",
    "VerifiedRelease": "base",
    "HubSource": "hub",
    "PublisherSource": "publisher",
})
