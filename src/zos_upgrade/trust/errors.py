"""The typed errors of release authenticity (issue 15): what a node refuses, what a repository refuses.

Two families under :class:`TrustError`:

- :class:`UntrustedRelease` and its subclasses: what a *node* refuses. Each is named after the TUF
  attack it stops, so a log line or ``status`` says which one happened. The node's trust decisions
  are python-tuf ngclient's; ``trust/client.py`` maps ngclient's exceptions onto these classes.
- :class:`TrustRepositoryError` and :class:`TrustConfigError`: what the *release engineer's*
  repository or the node's trust configuration refuses, before anything is signed or trusted.

Every message says what was wrong, where (file, URL, role, target path) and what was expected.
"""

from __future__ import annotations

from datetime import datetime

from zos_upgrade.errors import ZosUpgradeError

__all__ = [
    "EndlessData",
    "ExpiredMetadata",
    "ForgedMetadata",
    "FreezeAttack",
    "InvalidTargetPath",
    "MetadataUnavailable",
    "MixAndMatch",
    "RollbackAttack",
    "SlowRetrieval",
    "TargetMismatch",
    "TrustConfigError",
    "TrustError",
    "TrustRepositoryError",
    "UnknownTarget",
    "UntrustedRelease",
]


class TrustError(ZosUpgradeError):
    """Base of every release-authenticity error."""


class MetadataUnavailable(TrustError):
    """The metadata could not be fetched (server down, 404, network): not an attack; retried."""


class UntrustedRelease(TrustError):
    """The node refused what it was shown: the release, link or metadata is not proven authentic.

    Nothing on the node changed. What to do depends on the subclass; in every case the hub (or
    whoever answers for it) is serving something the release engineers did not sign.
    """

    attack = "untrusted release"


class ForgedMetadata(UntrustedRelease):
    """Metadata whose signatures do not meet the threshold of the keys its delegating role names.

    (ngclient ``UnsignedMetadataError``.) Someone forged or altered metadata, or the repository was
    signed with a key the node's root does not name (check the pinned root is the repository's).
    """

    attack = "forged metadata (arbitrary software)"


class RollbackAttack(UntrustedRelease):
    """Metadata older than what the node already trusts, or a link moved to an older release.

    (ngclient ``BadVersionNumberError``.) A server replays old signed metadata to push the node
    back to a release with known flaws. The node keeps its newer metadata; nothing to do on the
    node, investigate the server.
    """

    attack = "rollback"


class FreezeAttack(UntrustedRelease):
    """Metadata past its expiry: the node is shown a stale view of the repository.

    (ngclient ``ExpiredMetadataError``.) Carries the ``role`` and its ``expires`` time so ``status``
    can say since when. Either a server keeps the node on old metadata (freeze), or the release
    engineers did not re-sign in time (run ``zos-upgrade trust timestamp`` / check the hub's online
    key).
    """

    attack = "freeze (expired metadata)"

    def __init__(self, message: str, *, role: str = "", expires: datetime | None = None) -> None:
        super().__init__(message)
        self.role = role
        self.expires = expires


class ExpiredMetadata(FreezeAttack):
    """The name the design also uses for :class:`FreezeAttack`: expired metadata of ``role``."""


class MixAndMatch(UntrustedRelease):
    """Metadata of one role that do not match what the snapshot/timestamp sign for it.

    (ngclient ``RepositoryError`` on a meta hash, length or version.) A server mixes files of
    different repository states. Nothing to do on the node; the server must serve one state.
    """

    attack = "mix-and-match"


class EndlessData(UntrustedRelease):
    """A download longer than its signed length or than the fetcher's cap.

    (ngclient ``DownloadLengthMismatchError``.) A server tries to fill the node's disk or memory.
    """

    attack = "endless data"


class SlowRetrieval(UntrustedRelease):
    """A download that timed out or went too slowly to finish within its deadline.

    A server (or the path) drips bytes to keep the node from ever updating. Retried next round.
    """

    attack = "slow retrieval"


class TargetMismatch(UntrustedRelease):
    """A downloaded file whose length or hashes differ from the signed target's.

    The flist bytes are not the ones the release engineers signed (arbitrary software).
    """

    attack = "target mismatch (arbitrary software)"


class UnknownTarget(UntrustedRelease):
    """A link or release name that the signed targets metadata do not contain.

    The server announces something nobody signed (a made-up version, a forged link), or the
    release engineers have not signed it yet (``zos-upgrade trust sign`` / ``trust link``).
    """

    attack = "unknown target (arbitrary software)"


class TrustConfigError(TrustError):
    """The node's trust configuration is unusable: pinned root missing, unreadable or not a root.

    Fix the ``[trust]`` section or put the repository's root file where it says.
    """


class TrustRepositoryError(TrustError):
    """The release engineer's TUF repository refused a change or could not be read.

    A wrong or missing key, a threshold not met, a target that is not there, a link to an unknown
    target, a metadata file that fails validation. Nothing was written.
    """


class InvalidTargetPath(TrustError, ValueError):
    """A target path that is not one plain name (``/``, ``..``, empty, control characters...).

    Raised on both sides: the repository refuses to sign it (nothing written), the node refuses to
    follow it (the hub or metadata names something that can never be one file of one repository).
    """
