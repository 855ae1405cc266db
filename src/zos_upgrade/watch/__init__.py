"""Watchers: notice that something newer exists (a hub link, a bins repository, a release server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zos_upgrade import lazy

if TYPE_CHECKING:
    from zos_upgrade.watch.poll import Watcher
    from zos_upgrade.watch.publisher import PublisherWatcher
    from zos_upgrade.watch.repo import FListRepoWatcher
    from zos_upgrade.watch.semver import FListSemverWatcher

__all__ = ["FListRepoWatcher", "FListSemverWatcher", "PublisherWatcher", "Watcher"]

# name -> the submodule defining it: imported at first use (issue 19, an idle daemon's memory)
__getattr__ = lazy.exports(__name__, {
    "Watcher": "poll",
    "PublisherWatcher": "publisher",
    "FListRepoWatcher": "repo",
    "FListSemverWatcher": "semver",
})
