"""PublisherWatcher: a release server, proposing the next signed version above the node's (SPEC 7, 9)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

from zos_upgrade.node.events import ReleaseEvent
from zos_upgrade.publisher.base import Publisher
from zos_upgrade.versions import Version
from zos_upgrade.watch.poll import DEFAULT_MAX_BACKOFF, Schedule, Sleep, poll

__all__ = ["PublisherWatcher"]


class PublisherWatcher:
    """Watch a release server (SPEC 7) for versions above ``current``.

    Emits a :class:`ReleaseEvent` for the next version above ``current`` (or for ``latest`` when
    ``jump_to_latest``), with its release object; versions above ``latest`` are staged, not offered.
    """

    def __init__(
        self,
        publisher: Publisher,
        current: Version,
        interval: float,
        *,
        jump_to_latest: bool = False,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        self.publisher = publisher
        self.current = current
        self.jump_to_latest = jump_to_latest
        self._schedule = Schedule(interval, jitter, rng, max_backoff)
        self._sleep = sleep
        self.seen: Version | None = None  # the server's latest at the last check (status: drift)

    def confirm(self, version: Version) -> None:
        """The node now runs ``version``: the next event proposes what comes after it."""
        if version > self.current:
            self.current = version

    async def check(self) -> ReleaseEvent | None:
        latest = await self.publisher.latest()
        self.seen = latest
        if not latest > self.current:
            return None
        if self.jump_to_latest:
            pending = [latest]
        else:
            pending = [v for v in await self.publisher.list() if self.current < v <= latest] or [latest]
        upgrade = await self.publisher.get(pending[0])
        return ReleaseEvent(pending[0], upgrade, tuple(pending))

    def watch(self) -> AsyncIterator[ReleaseEvent]:
        where = str(getattr(self.publisher, "base_url", type(self.publisher).__name__))
        return poll({"publisher": where}, self.check,
                     lambda e: not e.version > self.current, self._schedule, self._sleep)
