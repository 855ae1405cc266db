"""Publisher: where a node learns about releases, and how release engineers publish them (SPEC 7).

Node side: :class:`HTTPPublisher` (verifies every release it returns). Release side:
:class:`ReleaseTree` (sign and add a release to a static tree), and
:func:`zos_upgrade.publisher.server.create_app` (serve a tree; imported on its own, so a node never
loads the web framework).
"""

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
