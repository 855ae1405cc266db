"""FListRepoWatcher: a repository of bins packages, proposed as what appeared, changed or went (SPEC 9)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.hub.models import FlistInfo
from zos_upgrade.hub.names import split_fqdn, validate_name
from zos_upgrade.node.events import RepoEvent
from zos_upgrade.watch.poll import DEFAULT_MAX_BACKOFF, Schedule, Sleep, poll

if TYPE_CHECKING:
    from zos_upgrade.hub.client import HubClient  # a TUF watcher has none: its import is not paid

__all__ = ["FListRepoWatcher"]

# only these are packages a node can install; tags and taglinks are folders of links
_INSTALLABLE = ("regular", "symlink")


class FListRepoWatcher:
    """Watch a repository of packages (``tf-zos-bins``): what appeared, changed, or disappeared.

    ``current`` maps ``repo/name`` to what the node has installed; keys of other repositories are
    not this watcher's business and are never proposed for deletion.
    """

    def __init__(
        self,
        repo: str,
        current: Mapping[str, RepoFList | FlistInfo],
        interval: float,
        *,
        hub: HubClient | None,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        self.repo = validate_name(repo, "repository")
        self.current = _as_flists(current)
        self._hub = hub
        self._schedule = Schedule(interval, jitter, rng, max_backoff)
        self._sleep = sleep
        self._confirmations = 0
        self._proposed: dict[str, RepoFList] = {}  # ``all`` of the last event emitted

    def confirm(self, all: Mapping[str, RepoFList | FlistInfo] | None = None) -> None:
        """The consumer applied an event: ``all`` is what the node has now (default: the ``all`` of
        the last event emitted). Pass a smaller mapping when only part of it could be installed:
        the rest is proposed again."""
        self.current = _as_flists(all) if all is not None else dict(self._proposed)
        self._confirmations += 1

    async def diff(self) -> tuple[dict[str, RepoFList], list[RepoFList], list[RepoFList]]:
        """``(all, to_add, to_del)``: every installable remote flist; those missing locally or whose
        ``updated``, ``md5`` or target changed; the local entries (the real ones) missing remotely."""
        remote = await self.remote()
        to_add = [flist for key, flist in sorted(remote.items())
                  if key not in self.current or _changed(self.current[key], flist)]
        prefix = self.repo + "/"
        to_del = [flist for key, flist in sorted(self.current.items())
                  if key.startswith(prefix) and key not in remote]
        return remote, to_add, to_del

    async def remote(self) -> dict[str, RepoFList]:
        """Every installable flist of the repository, by ``repo/name`` (the hub's listing; a TUF
        watcher: the signed targets)."""
        if self._hub is None:
            raise RuntimeError(f"{type(self).__name__} for {self.repo} has no hub client")
        remote: dict[str, RepoFList] = {}
        for entry in await self._hub.list(self.repo):
            if entry.type in _INSTALLABLE:
                flist = RepoFList(self.repo, entry, self._hub)
                remote[flist.fqdn()] = flist
        return remote

    async def check(self) -> RepoEvent | None:
        everything, to_add, to_del = await self.diff()
        if not to_add and not to_del:
            return None
        self._proposed = everything
        return RepoEvent(self.repo, to_add, to_del, all=everything)

    def watch(self) -> AsyncIterator[RepoEvent]:
        seen = self._confirmations

        def confirmed(_: RepoEvent) -> bool:
            nonlocal seen
            fresh, seen = self._confirmations != seen, self._confirmations
            return fresh

        return poll({"repo": self.repo}, self.check, confirmed, self._schedule, self._sleep)


def _as_flists(mapping: Mapping[str, RepoFList | FlistInfo]) -> dict[str, RepoFList]:
    out: dict[str, RepoFList] = {}
    for key, value in mapping.items():
        if isinstance(value, RepoFList):
            out[key] = value
        else:
            repo, _ = split_fqdn(key)
            out[key] = RepoFList(repo, value)
    return out


def _resolved(flist: RepoFList) -> str | None:
    try:
        return flist.absolute()
    except ZosUpgradeError:
        return None


def _changed(local: RepoFList, remote: RepoFList) -> bool:
    if local.info.updated != remote.info.updated or local.info.type != remote.info.type:
        return True
    old_md5 = getattr(local.info, "md5", "")
    new_md5 = getattr(remote.info, "md5", "")
    if old_md5 and new_md5 and old_md5 != new_md5:  # listings carry no md5: compare when both know it
        return True
    return _resolved(local) != _resolved(remote)
