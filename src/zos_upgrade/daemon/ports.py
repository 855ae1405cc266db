"""What the daemon needs of the layers below, as Protocols: the upgrader, the boot files, a watcher.

The real classes (``Upgrader``, ``Boot``, the watchers of :mod:`zos_upgrade.watch`) satisfy them;
tests drive the same policy with in-memory stand-ins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from zos_upgrade.hub.flists import RepoFList
    from zos_upgrade.node.events import FListEvent
    from zos_upgrade.sources import ReleaseSource, Target
    from zos_upgrade.upgrade import UpgradeReport

__all__ = ["BootPort", "UpgraderPort", "WatcherPort"]

Candidate = TypeVar("Candidate")
Event_co = TypeVar("Event_co", covariant=True)
Confirmed_contra = TypeVar("Confirmed_contra", contravariant=True)


class UpgraderPort(Protocol):
    """The slice of :class:`zos_upgrade.upgrade.Upgrader` the daemon drives."""

    async def recover(self) -> str | None: ...
    def sync_boot_files(self) -> None: ...
    async def install_from(self, source: ReleaseSource[Candidate], candidate: Candidate,
                           target: Target) -> UpgradeReport: ...
    async def uninstall_binary(self, fqdn: str) -> UpgradeReport: ...


class BootPort(Protocol):
    """The node's boot files (:class:`zos_upgrade.node.Boot`): what the node runs now."""

    def detect_boot_method(self) -> str: ...
    def current(self) -> FListEvent: ...
    def current_bins(self) -> Mapping[str, RepoFList]: ...


class WatcherPort(Protocol[Event_co, Confirmed_contra]):
    """A watcher: one look (an event, or None when nothing is new), and the confirmation of an event."""

    async def check(self) -> Event_co | None: ...
    def confirm(self, value: Confirmed_contra, /) -> None: ...
