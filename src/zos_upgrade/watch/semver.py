"""FListSemverWatcher: one hub link (the boot flist), proposed when its version rises (SPEC 9)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from zos_upgrade.hub.models import FlistInfo
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.node.events import FListEvent
from zos_upgrade.versions import Version
from zos_upgrade.watch.poll import DEFAULT_MAX_BACKOFF, Schedule, Sleep, poll

if TYPE_CHECKING:
    from zos_upgrade.hub.client import HubClient  # a TUF watcher has none: its import is not paid

__all__ = ["FListSemverWatcher"]

log = logging.getLogger(__name__)


class FListSemverWatcher:
    """Watch one flist (a link such as ``tf-zos/zos:production:latest.flist``) for a newer version.

    Emits an :class:`FListEvent` when the version behind the link is strictly greater than
    ``current``; a downgrade or a same-version change (new ``updated``/``md5``) is ignored.
    """

    def __init__(
        self,
        flist: str,
        interval: float,
        current: Version,
        *,
        hub: HubClient | None,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        self.repo, _ = split_fqdn(flist)
        self.flist = flist
        self.current = current
        self._hub = hub
        self._schedule = Schedule(interval, jitter, rng, max_backoff)
        self._sleep = sleep
        self._ignored: Version | None = None
        self.seen: Version | None = None  # the link's version at the last check (status: drift)

    def confirm(self, version: Version) -> None:
        """The consumer's upgrade to ``version`` succeeded: never propose it (or anything older) again."""
        if version > self.current:
            self.current = version

    async def check(self) -> FListEvent | None:
        """Ask the hub once; the event if the link's version is newer than ``current``."""
        info = await self.info()
        event = FListEvent(self.repo, info, self._hub)
        version = event.version()  # a target without a version is an error, not "0.0.0 < current"
        self.seen = version
        if version > self.current:
            return event
        if version < self.current and version != self._ignored:
            log.info("hub link points below the node's version; ignored",
                     extra={"flist": self.flist, "remote": str(version), "current": str(self.current)})
        self._ignored = version
        return None

    async def info(self) -> FlistInfo:
        """What the link points at now: the hub's ``/light`` answer (a TUF watcher: signed metadata)."""
        if self._hub is None:
            raise RuntimeError(f"{type(self).__name__} for {self.flist} has no hub client")
        return await self._hub.info(self.flist)

    def watch(self) -> AsyncIterator[FListEvent]:
        return poll({"flist": self.flist}, self.check, lambda e: not e.version() > self.current,
                     self._schedule, self._sleep)
