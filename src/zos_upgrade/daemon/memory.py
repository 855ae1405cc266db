"""The policies' memory of failed releases: what is never tried twice, and how a candidate is named.

One :class:`ReleaseMemory` is shared by every policy of a daemon (wiring builds it over
``<state>/failed-releases.json``, :mod:`zos_upgrade.node.failed`). A policy names each candidate
*before* anything is downloaded (:func:`flist_identity`, :func:`release_identity`), asks
:meth:`ReleaseMemory.held` whether it failed before, and after the transaction lets
:meth:`ReleaseMemory.judge` decide whether the failure was the release's own.

Only failures in the release's own code and services count (:data:`RELEASE_STEPS`: its hooks, the
restart of its services, probation), after which the node was rolled back (or the rollback is
pending): a download that failed, a full disk or a crash is the node's trouble, and the release is
tried again at the next round as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zos_upgrade.daemon.outcome import CheckOutcome
from zos_upgrade.node.failed import FailedRelease, FailedReleases, FailedReleasesError

if TYPE_CHECKING:
    from pathlib import Path

    from zos_upgrade.hub.flists import RepoFList
    from zos_upgrade.node.events import ReleaseEvent
    from zos_upgrade.upgrade.manifest import Manifest

__all__ = ["RELEASE_STEPS", "Candidate", "ReleaseMemory", "describe", "flist_identity",
           "installed_identity", "release_identity"]

log = logging.getLogger(__name__)

# transaction steps (upgrade/steps.py) whose failure is the release's own
# (program-start: the release's own upgrader program could not start, upgrade/probe.py)
RELEASE_STEPS = frozenset({"program-start", "pre-copy", "post-copy", "migrate", "restart", "probation",
                           "post-start"})
_ROLLED_BACK = frozenset({"rolled-back", "rollback-incomplete"})


@dataclass(frozen=True)
class Candidate:
    """A release as the policy sees it before download: its identity and its version text."""

    id: str
    version: str


def flist_identity(flist: RepoFList) -> Candidate:
    """A hub flist: the md5 of its ``/light`` info; a bins listing entry carries none, so its name
    and mtime (a re-upload under the same name is a newer release)."""
    md5 = getattr(flist.info, "md5", "")
    release_id = f"md5:{md5}" if md5 else f"listing:{flist.fqdn()}@{flist.info.updated}"
    try:
        version = str(flist.version())
    except Exception:  # a bins name without a version: the identity alone names it
        version = ""
    return Candidate(release_id, version)


def release_identity(event: ReleaseEvent) -> Candidate:
    """A release server's release: the signed blake2b-256 of its flist (its URL when it pins none)."""
    upgrade = event.upgrade
    release_id = f"blake2b:{upgrade.hash}" if upgrade.hash else f"flist:{upgrade.flist}"
    return Candidate(release_id, str(event.version))


def installed_identity(manifest: Manifest, flist: Path, *, publisher: bool) -> str:
    """An installed release named as its source's candidate was (``zos-upgrade rollback`` holds it):
    the hub's md5 is the flist file's md5 (the manifest's), a release server's the blake2b-256 of
    the flist file's bytes (kept beside the manifest, checked by md5 before this is asked)."""
    if not publisher:
        return f"md5:{manifest.md5}"
    # here, not at the top: the signing module loads cryptography, which an idle daemon never needs
    from zos_upgrade.publisher.signing import flist_hash

    return f"blake2b:{flist_hash(flist.read_bytes())}"


class ReleaseMemory:
    """Failed releases: held back until an operator clears them or a newer release appears."""

    def __init__(self, store: FailedReleases) -> None:
        self.store = store

    def held(self, candidate: Candidate, what: str, *, at: float, version: str) -> CheckOutcome | None:
        """The outcome of NOT applying ``candidate`` (it failed here before), or None to go on.

        A memory file that cannot be read holds everything back: applying a release that failed
        before is the fault this memory exists to prevent."""
        try:
            known = self.store.find(candidate.id)
        except FailedReleasesError as exc:
            log.error("failed-release memory unreadable; applying nothing", extra={"error": str(exc)})
            return CheckOutcome(at, "error", version, f"{what}: {exc}")
        if known is None:
            return None
        log.warning("release failed here before; not applied again", extra={
            "what": what, "release": candidate.id, "version": candidate.version, "failed_at": known.at,
            "step": known.step})
        return CheckOutcome(at, "held", version, f"{what}: {describe(known)}")

    def judge(self, candidate: Candidate, what: str, outcome: CheckOutcome) -> None:
        """Remember ``candidate`` when ``outcome`` is a failure of the release's own."""
        if outcome.result not in _ROLLED_BACK or outcome.failed_step not in RELEASE_STEPS:
            return
        try:
            self.store.remember(candidate.id, what=what, version=candidate.version, step=outcome.failed_step,
                                reason=outcome.detail)
        except (OSError, FailedReleasesError) as exc:  # the failure itself is already recorded
            log.error("cannot remember the failed release", extra={"release": candidate.id,
                                                                   "error": str(exc)})
            return
        log.warning("failed release remembered; it is not applied again until cleared", extra={
            "what": what, "release": candidate.id, "version": candidate.version, "step": outcome.failed_step})

    def count(self) -> int | None:
        """How many releases are held (None: the memory is unreadable)."""
        try:
            return len(self.store.load())
        except FailedReleasesError:
            return None


def describe(entry: FailedRelease) -> str:
    """One line for logs and ``status``: which release, when it failed, how to retry it."""
    name = entry.version or entry.id
    return (f"release {name} ({entry.id}) failed here at step {entry.step} and is held: not applied "
            f"again until `zos-upgrade clear-failed {name}` or a newer release appears")
