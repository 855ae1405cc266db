"""TUF as a release source: a candidate -> its flist file, downloaded and checked through TUF (issue 15).

What the candidate says (a name, a version) only picks a target; the bytes are believed because
ngclient checked them against the signed length and sha256 of that target in metadata it verified
(``trust/client.py``). The file is kept under its md5 like every source's (the hub's name for it,
which the signed custom field also carries and the client compares). A refusal is a
:class:`VerificationFailed` whose cause is the typed trust error and whose message names the attack;
metadata that cannot be fetched at all is a :class:`FetchFailed` (retried next round).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.node.events import ReleaseEvent
from zos_upgrade.node.infofile import info_document
from zos_upgrade.sources.base import FetchFailed, Target, UnusableRelease, VerificationFailed, VerifiedRelease
from zos_upgrade.trust.errors import TrustError, UntrustedRelease

if TYPE_CHECKING:
    from zos_upgrade.trust.client import TrustedRepo, TrustedTarget
    from zos_upgrade.trust.isolated import IsolatedTrust

__all__ = ["TufHubSource", "TufReleaseSource", "verified_by"]


def verified_by(trusted: TrustedRepo) -> str:
    roles = trusted.versions()
    shown = ", ".join(f"{role} v{roles[role]}" for role in ("root", "targets", "snapshot", "timestamp")
                      if role in roles)
    return f"TUF ({shown})"


def _fetch(trust: TrustedRepo | IsolatedTrust, path: str,
           downloads: Path) -> tuple[TrustedTarget, Path, str, str]:
    """Refresh, look the target up in the signed targets, download and check it (in a thread)."""
    from zos_upgrade.trust.isolated import IsolatedTrust

    # the daemon's repository between transactions: the download loads python-tuf here, now
    trusted = trust.full() if isinstance(trust, IsolatedTrust) else trust
    trusted.refresh()
    target = trusted.target(path)
    flist, md5 = trusted.download(target, downloads)
    return target, flist, md5, verified_by(trusted)


async def _checked(trusted: TrustedRepo | IsolatedTrust, path: str, downloads: Path,
                   what: str) -> tuple[TrustedTarget, Path, str, str]:
    try:
        return await asyncio.to_thread(_fetch, trusted, path, downloads)
    except UntrustedRelease as exc:
        name = type(exc).__name__
        raise VerificationFailed(f"{what}: refused by TUF, {name} ({exc.attack}): {exc}") from exc
    except (TrustError, OSError) as exc:
        raise FetchFailed(f"{what}: could not be fetched through TUF: {type(exc).__name__}: {exc}") from exc


class TufHubSource:
    """A hub flist (boot link target, bins package) whose bytes TUF vouches for."""

    def __init__(self, trusted: TrustedRepo | IsolatedTrust, repo: str, downloads: Path, *,
                 hub_url: str) -> None:
        self.trusted = trusted
        self.repo = repo
        self.downloads = Path(downloads)
        self.hub_url = hub_url.rstrip("/")

    async def verify(self, candidate: RepoFList, target: Target) -> VerifiedRelease:
        try:
            repo, name = split_fqdn(candidate.absolute())
        except Exception as exc:
            raise UnusableRelease(f"hub flist {candidate.fqdn()}: no usable release name: {exc}") from exc
        if repo != self.repo:
            raise UnusableRelease(f"hub flist {candidate.fqdn()} resolves into {repo}, not {self.repo}: "
                                  "its TUF repository does not vouch for other repositories")
        signed, flist, md5, by = await _checked(self.trusted, name, self.downloads,
                                                f"hub flist {repo}/{name}")
        info = info_document(candidate.info)
        info["md5"] = md5
        info["size"] = signed.length
        info["verified_by"] = by  # the manifest keeps it: `status` shows what vouched for the release
        return VerifiedRelease(
            target=target, fqdn=candidate.fqdn(), version=str(candidate.try_version()),
            source=f"{repo}/{name}", flist=flist, md5=md5, verified_by=by, info=info,
            block_store=self.hub_url + "/blocks",
        )


class TufReleaseSource:
    """A release of a release tree: the signed target named by its version, fetched by signed URL."""

    def __init__(self, trusted: TrustedRepo | IsolatedTrust, downloads: Path) -> None:
        self.trusted = trusted
        self.downloads = Path(downloads)

    async def verify(self, candidate: ReleaseEvent, target: Target) -> VerifiedRelease:
        version = str(candidate.version)
        signed, flist, md5, by = await _checked(self.trusted, version, self.downloads, f"release {version}")
        # here: the publisher source's module loads httpx and the signing stack (cryptography)
        from zos_upgrade.sources.publisher import fqdn_of_url

        url = signed.zos.flist or ""
        fqdn = fqdn_of_url(url)
        parts = urlsplit(url)
        info = {"type": "regular", "updated": int(time.time()), "md5": md5, "name": fqdn.split("/")[1],
                "target": None, "verified_by": by}
        return VerifiedRelease(
            target=target, fqdn=fqdn, version=version, source=url, flist=flist, md5=md5, verified_by=by,
            info=info, block_store=f"{parts.scheme}://{parts.netloc}/blocks",
        )
