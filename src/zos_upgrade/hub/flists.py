"""RepoFList: one flist of a hub repository, as the watchers and the upgrader see it (SPEC 1, 3)."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from zos_upgrade.hub.models import FlistContents, FlistInfo, HubAnswerInvalid, HubError, RepoEntry
from zos_upgrade.hub.names import split_fqdn, validate_name
from zos_upgrade.versions import Version, try_version_from_name, version_from_name

if TYPE_CHECKING:
    from zos_upgrade.hub.client import HubClient

__all__ = ["RepoFList"]


class RepoFList:
    """An flist named ``repo/name`` with what the hub said about it.

    ``info`` is either the ``/light`` object (:class:`FlistInfo`, whose symlink ``target`` is the raw
    link text such as ``../other/x.flist``) or an item of a repository listing (:class:`RepoEntry`,
    whose ``target`` the hub already cleaned to ``other/x.flist``). Both resolve to the same
    :meth:`absolute`.
    """

    __slots__ = ("_client", "info", "name", "repo")

    def __init__(self, repo: str, info: FlistInfo | RepoEntry, client: HubClient | None = None) -> None:
        self.repo = validate_name(repo, "repository")
        self.name = info.name
        self.info = info
        self._client = client

    def __repr__(self) -> str:
        return f"RepoFList({self.fqdn()!r}, type={self.info.type!r}, target={self.info.target!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RepoFList):
            return NotImplemented
        return (self.repo, self.info) == (other.repo, other.info)

    def __hash__(self) -> int:
        return hash((self.repo, self.name))

    @property
    def is_symlink(self) -> bool:
        return self.info.type == "symlink"

    def fqdn(self) -> str:
        """``repo/name``: where the hub serves it (the link's own name for a symlink)."""
        return f"{self.repo}/{self.name}"

    def absolute(self) -> str:
        """``repo/(target if symlink else name)``; a cross-repo target resolves into its repository."""
        if not self.is_symlink:
            return self.fqdn()
        target = self.info.target
        if not target:
            raise HubAnswerInvalid(f"symlink flist {self.fqdn()} has no target")
        if isinstance(self.info, RepoEntry) and "/" in target and not target.startswith("."):
            resolved = posixpath.normpath(target)  # listing targets are cleaned: "other/x.flist"
        else:
            resolved = posixpath.normpath(posixpath.join(self.repo, target))
        try:
            split_fqdn(resolved)
        except HubError as exc:
            raise HubAnswerInvalid(
                f"symlink flist {self.fqdn()} points at {target!r}, which is not an flist of a repository"
            ) from exc
        return resolved

    def _version_source(self) -> str:
        if self.is_symlink:
            return self.info.target or ""
        return self.name

    def version(self) -> Version:
        """The version in the target's name (symlink) or in the own name (regular flist)."""
        return version_from_name(posixpath.basename(self._version_source()))

    def try_version(self) -> Version:
        """Like :meth:`version`, but ``0.0.0`` where the name carries no version."""
        return try_version_from_name(posixpath.basename(self._version_source()))

    async def files(self) -> FlistContents:
        """The tree inside the flist, asked of the hub this flist came from."""
        if self._client is None:
            raise HubError(f"flist {self.fqdn()} was built without a HubClient; files() needs one")
        return await self._client.files(self.absolute())
