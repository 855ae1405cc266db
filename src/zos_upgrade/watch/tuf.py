"""Watchers that believe only TUF metadata (issue 15): the boot link, a bins repo, a release tree.

Each is the plain watcher (same schedule, same events, same confirm rules) with its one look at the
source replaced: refresh the TUF metadata (python-tuf ngclient, in a thread: it is synchronous),
then read the signed targets. Nothing the hub's own API says is used; a hub (or a proxy) can only
make a refresh fail, with the typed error of :mod:`zos_upgrade.trust.errors` naming the attack.

- :class:`TufLinkWatcher`: the signed link target ``zos:production.flist`` -> the release it names
  (its version read from the release's flist name, as the hub client does);
- :class:`TufRepoWatcher`: the signed flist targets of a bins repository;
- :class:`TufPublisher`: a release tree's signed releases and ``latest`` channel, as a
  :class:`~zos_upgrade.publisher.base.Publisher` so :class:`PublisherWatcher` runs unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.hub.models import FlistInfo
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.publisher.base import Upgrade
from zos_upgrade.trust.errors import UnknownTarget
from zos_upgrade.trust.layout import LATEST, release_path_version
from zos_upgrade.versions import Version
from zos_upgrade.watch.repo import FListRepoWatcher
from zos_upgrade.watch.semver import FListSemverWatcher

if TYPE_CHECKING:
    from zos_upgrade.trust.view import TargetLike, Trusted

__all__ = ["TufLinkWatcher", "TufPublisher", "TufRepoWatcher", "signed_info"]


def signed_info(name: str, release: TargetLike, *, link: bool) -> FlistInfo:
    """The ``/light`` shape of a signed target, as the boot files record it (``updated`` is 0: a
    signed target carries no time, and a constant keeps an unchanged package unchanged)."""
    return FlistInfo(name=name, size=release.length, updated=0, type="symlink" if link else "regular",
                     md5=release.zos.md5 or "", target=release.path if link else None)


class TufLinkWatcher(FListSemverWatcher):
    """The boot flist's link, resolved through the signed targets of its repository's TUF repo."""

    def __init__(self, flist: str, interval: float, current: Version, *, trusted: Trusted,
                 **options: Any) -> None:
        super().__init__(flist, interval, current, hub=None, **options)
        self.trusted = trusted
        self.link = split_fqdn(flist)[1]

    async def info(self) -> FlistInfo:
        return await asyncio.to_thread(self._look)

    def _look(self) -> FlistInfo:
        self.trusted.refresh()
        return signed_info(self.link, self.trusted.resolve_link(self.link), link=True)


class TufRepoWatcher(FListRepoWatcher):
    """A bins repository: every signed flist target is a package (links are not packages)."""

    def __init__(self, repo: str, current: Mapping[str, RepoFList | FlistInfo], interval: float, *,
                 trusted: Trusted, **options: Any) -> None:
        super().__init__(repo, current, interval, hub=None, **options)
        self.trusted = trusted

    async def remote(self) -> dict[str, RepoFList]:
        releases = await asyncio.to_thread(self._look)
        return {f"{self.repo}/{t.path}": RepoFList(self.repo, signed_info(t.path, t, link=False))
                for t in releases if t.zos.kind == "flist"}

    def _look(self) -> list[TargetLike]:
        self.trusted.refresh()
        return list(self.trusted.releases())


class TufPublisher:
    """A release tree's signed releases: ``list`` and ``latest`` from one refresh, ``get`` from it.

    Only the signed targets count: the tree's unsigned ``versions`` and ``latest`` files are never
    read. ``get`` answers the release object the node's source needs: the signed flist URL (the
    source downloads it and checks the signed length and hashes, not this object's ``hash``).
    """

    def __init__(self, trusted: Trusted) -> None:
        self.trusted = trusted
        self.base_url = trusted.metadata_url

    def _refresh(self) -> dict[Version, TargetLike]:
        self.trusted.refresh()
        return {release_path_version(t.path): t for t in self.trusted.releases() if t.zos.kind == "release"}

    async def list(self) -> list[Version]:
        return sorted(await asyncio.to_thread(self._refresh))

    async def latest(self) -> Version:
        await asyncio.to_thread(self._refresh)
        return release_path_version(self.trusted.resolve_link(LATEST).path)

    async def get(self, version: Version) -> Upgrade:
        target = self.trusted.target(str(version))
        if target.zos.kind != "release" or target.zos.flist is None:
            raise UnknownTarget(f"{self.trusted.name}: target {target.path!r} is not a signed release "
                                f"[{UnknownTarget.attack}]")
        return Upgrade(flist=target.zos.flist, version=str(version))

    async def aclose(self) -> None:
        await asyncio.to_thread(self.trusted.close)

