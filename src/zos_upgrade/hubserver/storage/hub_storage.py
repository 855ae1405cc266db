"""One hub storage root as the single object the server holds: its layout, listings, lookups, writes.

Each job lives in a module of its own (:mod:`.layout`, :mod:`.listings`, :mod:`.lookup`,
:mod:`.writes`); this object wires them over one root and offers their methods under one name, so
a route handler or a tool never has to know which part answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from zos_upgrade.hubserver.storage.layout import StorageLayout
from zos_upgrade.hubserver.storage.listings import Listings
from zos_upgrade.hubserver.storage.lookup import FlistLookup
from zos_upgrade.hubserver.storage.writes import StorageWrites

__all__ = ["HubStorage"]


class HubStorage:
    """One hub storage root. Thread-safe: reads run in worker threads, writes are serialized."""

    def __init__(
        self,
        root: Path,
        *,
        official: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = StorageLayout(root)
        self.root = self.layout.root
        self.official = official
        self.listings = Listings(self.layout, official=official, clock=clock)
        self.lookup = FlistLookup(self.layout)
        self.writes = StorageWrites(self.layout, self.lookup, changed=self.listings.forget, clock=clock)
        # the flat API: each name is the method of the one part that owns it
        self.repo_dir = self.layout.repo_dir
        self.tag_dir = self.layout.tag_dir
        self.repositories = self.listings.repositories
        self.all_flists = self.listings.all_flists
        self.fileslist = self.listings.fileslist
        self.listing = self.listings.listing
        self.tag_listing = self.listings.tag_listing
        self.resolve = self.lookup.resolve
        self.known_md5 = self.lookup.known_md5
        self.md5 = self.lookup.md5
        self.info = self.lookup.info
        self.taglink = self.lookup.taglink
        self.sweep_temp_files = self.writes.sweep_temp_files
        self.upload_target = self.writes.upload_target
        self.commit = self.writes.commit
        self.link = self.writes.link
        self.crosslink = self.writes.crosslink
        self.crosstag = self.writes.crosstag
        self.tag = self.writes.tag
        self.untag = self.writes.untag
        self.rename = self.writes.rename
        self.delete = self.writes.delete

    @property
    def stat_calls(self) -> int:
        """How many stat()s hit the disk so far: the listing cache is tested by it."""
        return self.layout.stat_calls
