"""Releases that failed on this node: ``<state_dir>/failed-releases.json``, so none is applied twice.

A release whose transaction failed in its own code or services (a hook, the restart, probation) is
remembered here by its identity, the hash that names the flist before anything is downloaded: the
hub's md5 from the ``/light`` info (``md5:<hex>``), the publisher's signed blake2b-256
(``blake2b:<hex>``), or for a bins listing that carries no hash, the entry's name and mtime
(``listing:<repo/name>@<mtime>``: a re-upload is a new release). The daemon's policies consult it
before each transaction (:mod:`zos_upgrade.daemon.policy`); an operator clears entries
(``zos-upgrade clear-failed [VERSION]``); ``zos-upgrade status`` shows them.

The file is small (bounded to :data:`MAX_ENTRIES` entries) and written durably
(``fsutil.atomic_write_json``). A file that exists but cannot be read is an error, never "no
failed releases": the safe reading of a damaged memory is to apply nothing until it is cleared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import atomic_write_json
from zos_upgrade.node.documents import read_document

__all__ = ["FAILED_FILE", "MAX_ENTRIES", "FailedRelease", "FailedReleases", "FailedReleasesError"]

FAILED_FILE = "failed-releases.json"
MAX_ENTRIES = 100  # the oldest go first: a node that failed 100 releases has other problems
_MAX_BYTES = 1 << 20
_FORMAT = 1


class FailedReleasesError(ZosUpgradeError):
    """``failed-releases.json`` exists but is unreadable, too large or not a failed-release list."""


class FailedRelease(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """One release that failed here, and why."""

    id: str         # "md5:<hex>", "blake2b:<hex>" or "listing:<repo/name>@<mtime>"
    what: str       # what the daemon was doing, e.g. "boot upgrade tf/zos:latest.fl 1.1.0"
    version: str    # semver text of the release ("" when its name carries none)
    step: str       # the transaction step that failed (probation, restart, migrate...)
    reason: str
    at: float       # unix time of the failure


class _Document(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    format: int = _FORMAT
    releases: list[FailedRelease] = msgspec.field(default_factory=list)


class FailedReleases:
    """The list of failed releases of one state directory; every change is durable before it returns."""

    def __init__(self, state_dir: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / FAILED_FILE
        self._clock = clock

    def load(self) -> list[FailedRelease]:
        """Every remembered release, oldest first; [] when the file does not exist."""
        document = read_document(
            self.path, _Document, limit=_MAX_BYTES, expected="a small JSON list of failed releases",
            what="a failed-release list", error=FailedReleasesError,
            hint="; remove it with `zos-upgrade clear-failed`")
        return [] if document is None else document.releases

    def find(self, release_id: str) -> FailedRelease | None:
        return next((r for r in self.load() if r.id == release_id), None)

    def remember(self, release_id: str, *, what: str, version: str, step: str, reason: str) -> FailedRelease:
        """Record (or refresh) one failed release."""
        entry = FailedRelease(id=release_id, what=what, version=version, step=step, reason=reason[:2000],
                              at=self._clock())
        kept = [r for r in self.load() if r.id != release_id]
        self._save([*kept, entry][-MAX_ENTRIES:])
        return entry

    def clear(self, selector: str | None = None) -> list[FailedRelease]:
        """Forget every entry (``selector`` None) or those whose version or id is ``selector``;
        returns what was forgotten. A damaged file is removed when everything is cleared."""
        if selector is None:
            try:
                removed = self.load()
            except FailedReleasesError:
                removed = []
            self.path.unlink(missing_ok=True)
            return removed
        entries = self.load()
        removed = [r for r in entries if selector in (r.version, r.id)]
        if removed:
            self._save([r for r in entries if r not in removed])
        return removed

    def _save(self, entries: list[FailedRelease]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, msgspec.to_builtins(_Document(releases=entries)), indent=2)
