"""The hub as a release source: a hub flist -> its flist file downloaded and checked by the hub's md5.

The file downloaded is the flist's resolved target (``RepoFList.absolute()``), never the moving link
name (SPEC 12): the link may move between the check and the download, its target cannot.
"""

from __future__ import annotations

from pathlib import Path

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.node.infofile import info_document
from zos_upgrade.sources.base import FetchFailed, Target, VerifiedRelease

__all__ = ["HubSource"]


class HubSource:
    """Turns a :class:`RepoFList` (a boot link's target, a bins package) into a VerifiedRelease."""

    def __init__(self, hub: HubClient, downloads: Path) -> None:
        self.hub = hub
        self.downloads = Path(downloads)

    async def verify(self, candidate: RepoFList, target: Target) -> VerifiedRelease:
        """Download ``candidate``'s resolved target into ``downloads``; the hub client checks its md5."""
        try:
            source = candidate.absolute()
            version = str(candidate.try_version())
            flist = await self.hub.download(source, self.downloads)
        except (ZosUpgradeError, OSError) as exc:
            raise FetchFailed(
                f"hub flist {candidate.fqdn()} from {self.hub.base_url}: could not be downloaded into "
                f"{self.downloads}: {type(exc).__name__}: {exc}"
            ) from exc
        info = info_document(candidate.info)
        if target == "bin":
            info.setdefault("size", 0)  # a repository listing carries no size; the bins file wants one
        return VerifiedRelease(
            target=target, fqdn=candidate.fqdn(), version=version, source=source, flist=flist,
            md5=flist.name, verified_by="hub md5", info=info, block_store=self.hub.base_url + "/blocks",
        )
