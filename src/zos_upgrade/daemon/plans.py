"""The phased rollout plan of a release, read only from the node's verified TUF metadata.

Under ``[trust] root`` the daemon's :class:`~zos_upgrade.daemon.strategy.RolloutGate` asks
:class:`TrustedPlans` for the plan of the version a policy is about to install. The answer comes
from the targets metadata ngclient verified at the watcher's check that proposed that version (no
fetch of its own, no unsigned source): a server on the path cannot add, change or remove a plan
without breaking the targets' signatures, which the trust layer refuses (``ForgedMetadata``).

Which entry carries it (the release engineer's choice, ``trust sign|link --rollout``):

1. the followed link's entry, when the link resolves to that version: the plan of this link move;
2. else the release's own entry (the flist, or the publisher-mode version): the release's plan;
3. else none: the release goes to every node at once.

A plan inside validly signed metadata that the rollout rules refuse is a :class:`RolloutError`
(the gate turns it into a round that does not start the release and says why).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from zos_upgrade.rollout import RolloutError, RolloutPlan, parse_plan
from zos_upgrade.trust.errors import InvalidTargetPath, UnknownTarget
from zos_upgrade.trust.layout import target_version

if TYPE_CHECKING:
    from zos_upgrade.trust.view import TargetLike, Trusted

__all__ = ["TrustedPlans", "flist_version", "release_version"]


def flist_version(target: TargetLike) -> str | None:
    """The version a hub-mode release target names (its flist name), None for another file."""
    try:
        return str(target_version(target.path))
    except InvalidTargetPath:
        return None


def release_version(target: TargetLike) -> str | None:
    """The version of a publisher-mode release target: its path is the version text."""
    return target.path


class TrustedPlans:
    """``version -> RolloutPlan | None`` (the daemon's ``PlanLookup``) over one :class:`TrustedRepo`.

    ``link``: the target the node follows (the boot flist link, or ``latest``), None for none;
    ``version_of``: how a release target names its version (:func:`flist_version` for hub mode,
    :func:`release_version` for a release tree)."""

    def __init__(self, trusted: Trusted, *, link: str | None,
                 version_of: Callable[[TargetLike], str | None]) -> None:
        self.trusted = trusted
        self.link = link
        self._version_of = version_of

    def __call__(self, version: str) -> RolloutPlan | None:
        found = self._entry(version)
        if found is None:
            return None
        path, document = found
        return parse_plan(dict(document), source=f"{self.trusted.name}: signed rollout plan of {path!r}")

    def _entry(self, version: str) -> tuple[str, Mapping[str, Any]] | None:
        """(target path, plan document) of the entry whose plan applies to ``version``."""
        release: TargetLike | None = None
        if self.link is not None:
            link: TargetLike | None
            linked: TargetLike | None
            try:
                link, linked = self.trusted.target(self.link), self.trusted.resolve_link(self.link)
            except UnknownTarget:  # not signed (yet): the release entries may still hold a plan
                link = linked = None
            if link is not None and linked is not None and self._version_of(linked) == version:
                if link.zos.kind == "link" and link.zos.rollout is not None:
                    return link.path, link.zos.rollout
                release = linked
        if release is None:
            matches = [t for t in self.trusted.releases() if self._version_of(t) == version]
            if len({t.path for t in matches if t.zos.rollout is not None}) > 1:
                # two signed files of one version with plans: which one the node installs is not
                # this lookup's to guess, and a wrong guess could speed a rollout up
                raise RolloutError(f"{self.trusted.name}: several signed targets of version {version} carry "
                                   f"rollout plans ({', '.join(t.path for t in matches)}); sign one of them")
            release = next((t for t in matches if t.zos.rollout is not None), None)
        if release is None or release.zos.rollout is None:
            return None
        return release.path, release.zos.rollout
