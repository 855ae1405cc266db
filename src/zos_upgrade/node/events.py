"""What a watcher tells the upgrader (SPEC 9): an flist moved, a repository changed, a release appeared.

:class:`FListEvent` is the ``/light`` info of one flist plus its repository. It *is* a
:class:`~zos_upgrade.hub.flists.RepoFList` (same ``fqdn()``, ``absolute()``, ``version()`` rules,
one implementation) with the event's type and ``commit()`` on top. :class:`RepoEvent` lists what a
repository gained or changed (``to_add``) and what it lost (``to_del``, the real entries the node
had — the original filled it with zero values). :class:`ReleaseEvent` is a release server's news.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from zos_upgrade.fsutil import atomic_write_bytes
from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.hub.models import FlistInfo
from zos_upgrade.node.infofile import encode_info
from zos_upgrade.publisher.base import Upgrade
from zos_upgrade.versions import Version

if TYPE_CHECKING:
    from zos_upgrade.hub.client import HubClient

__all__ = ["Event", "EventType", "FListEvent", "ReleaseEvent", "RepoEvent", "RepoFList"]


class EventType(StrEnum):
    FLIST = "flist"
    REPO = "repo"
    RELEASE = "release"


class Event(Protocol):
    @property
    def event_type(self) -> EventType: ...


class FListEvent(RepoFList):
    """One flist (usually the boot flist's link) with the ``/light`` info the hub gave for it."""

    __slots__ = ()

    info: FlistInfo

    def __init__(self, repo: str, info: FlistInfo, client: HubClient | None = None) -> None:
        super().__init__(repo, info, client)

    def __repr__(self) -> str:
        return f"FListEvent({self.fqdn()!r}, type={self.info.type!r}, target={self.info.target!r})"

    @property
    def event_type(self) -> EventType:
        return EventType.FLIST

    def must_version(self) -> Version:
        """The version, or :class:`~zos_upgrade.versions.InvalidVersion` (same as :meth:`version`)."""
        return self.version()

    def commit(self, path: Path | str, mode: int = 0o400) -> None:
        """Atomically write this flist's info (the boot-file JSON shape) to ``path``, read-only as
        the original did."""
        atomic_write_bytes(path, encode_info(self.info), mode)


@dataclass(frozen=True)
class RepoEvent:
    """A repository changed: ``to_add`` are new or updated flists, ``to_del`` those that disappeared.

    ``all`` is every installable flist the repository holds now, keyed ``repo/name``: what the
    consumer passes to ``FListRepoWatcher.confirm`` (and records with ``Boot.set_bins``) once it
    applied the event.
    """

    repo: str
    to_add: list[RepoFList] = field(default_factory=list)
    to_del: list[RepoFList] = field(default_factory=list)
    all: Mapping[str, RepoFList] = field(default_factory=dict)

    @property
    def event_type(self) -> EventType:
        return EventType.REPO


@dataclass(frozen=True)
class ReleaseEvent:
    """A release server publishes versions above the node's.

    ``version`` is the one to apply now (the next above the node's, or ``latest`` when the watcher
    jumps); ``upgrade`` is its release object as the publisher returned it (a verifying publisher
    checked its signature); ``pending`` lists every newer version up to ``latest``, in order,
    ``version`` first.
    """

    version: Version
    upgrade: Upgrade
    pending: Sequence[Version] = ()

    @property
    def event_type(self) -> EventType:
        return EventType.RELEASE
