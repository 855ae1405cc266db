"""Release sources: each turns what it found (hub flist, signed release, local file) into a verified release."""

from zos_upgrade.sources.base import ReleaseRejected, ReleaseSource, Target, VerifiedRelease

__all__ = ["ReleaseRejected", "ReleaseSource", "Target", "VerifiedRelease"]
