"""Watchers: notice that something newer exists (a hub link, a bins repository, a release server)."""

from zos_upgrade.watch.poll import Watcher
from zos_upgrade.watch.publisher import PublisherWatcher
from zos_upgrade.watch.repo import FListRepoWatcher
from zos_upgrade.watch.semver import FListSemverWatcher

__all__ = ["FListRepoWatcher", "FListSemverWatcher", "PublisherWatcher", "Watcher"]
