"""Publisher: where a node learns about releases, and how release engineers publish them (SPEC 7).

Node side: :class:`HTTPPublisher` (verifies every release it returns). Release side:
:class:`ReleaseTree` (sign and add a release to a static tree), and
:func:`zos_upgrade.publisher.server.create_app` (serve a tree; imported on its own, so a node never
loads the web framework).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zos_upgrade import lazy

if TYPE_CHECKING:
    from zos_upgrade.publisher.base import (
        BadSignature,
        DuplicateVersions,
        HashMismatch,
        InvalidAnswer,
        InvalidKey,
        LatestNotListed,
        Publisher,
        PublisherError,
        ReleaseExists,
        ReplayedRelease,
        UnknownKey,
        UnsignedRelease,
        Upgrade,
    )
    from zos_upgrade.publisher.http import HTTPPublisher
    from zos_upgrade.publisher.signing import TrustedKeys, load_private_key, load_public_key
    from zos_upgrade.publisher.tree import ReleaseTree

__all__ = [
    "BadSignature",
    "DuplicateVersions",
    "HTTPPublisher",
    "HashMismatch",
    "InvalidAnswer",
    "InvalidKey",
    "LatestNotListed",
    "Publisher",
    "PublisherError",
    "ReleaseExists",
    "ReleaseTree",
    "ReplayedRelease",
    "TrustedKeys",
    "UnknownKey",
    "UnsignedRelease",
    "Upgrade",
    "load_private_key",
    "load_public_key",
]

# name -> the submodule defining it: imported at first use (issue 19, an idle daemon's memory)
__getattr__ = lazy.exports(__name__, {
    "BadSignature": "base",
    "DuplicateVersions": "base",
    "HashMismatch": "base",
    "InvalidAnswer": "base",
    "InvalidKey": "base",
    "LatestNotListed": "base",
    "Publisher": "base",
    "PublisherError": "base",
    "ReleaseExists": "base",
    "ReplayedRelease": "base",
    "UnknownKey": "base",
    "UnsignedRelease": "base",
    "Upgrade": "base",
    "HTTPPublisher": "http",
    "TrustedKeys": "signing",
    "load_private_key": "signing",
    "load_public_key": "signing",
    "ReleaseTree": "tree",
})
