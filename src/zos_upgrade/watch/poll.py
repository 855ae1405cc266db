"""The rules every watcher shares: when to look again, and the ``watch()`` loop (SPEC 9).

Each ``watch()`` is an async generator run by the consumer's own task: it starts no task of its
own, so cancelling the consumer ends it and leaks nothing. The rules, shared by all three watchers
through :func:`poll`:

- the first check runs before the first event, and a failure there raises (the caller decides);
- then a check every ``interval`` seconds plus a random ``jitter`` (so a fleet does not hit the
  hub in step); requests are conditional (the hub client's ETag cache);
- a failing check is logged and retried with exponential backoff (never fatal once started);
- an event is a proposal: the watcher advances its ``current`` only when the consumer calls
  ``confirm(...)`` after a successful upgrade. An unconfirmed event is proposed again after a
  backoff, never forgotten (the original forgot a version whose upgrade failed).

Each watcher also exposes ``check()``: one look, returning the event or ``None`` and raising on
failure, for a daemon that runs its own loop and policy (``watch()`` is that loop, ready-made).
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.net import Backoff
from zos_upgrade.node.events import Event

__all__ = ["DEFAULT_MAX_BACKOFF", "Schedule", "Sleep", "Watcher", "poll"]

log = logging.getLogger(__name__)

E = TypeVar("E")
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_MAX_BACKOFF = 3600.0


class Watcher(Protocol):
    def watch(self) -> AsyncIterator[Event]: ...


class Schedule:
    """When to look next: ``interval`` + jitter normally; exponential backoff (at least
    ``interval``, at most ``max_backoff``) while checks fail or an event stays unconfirmed."""

    def __init__(self, interval: float, jitter: float, rng: random.Random | None, max_backoff: float) -> None:
        if interval <= 0:
            raise ValueError(f"watch interval must be positive, got {interval!r}")
        if jitter < 0:
            raise ValueError(f"watch jitter must not be negative, got {jitter!r}")
        self.interval = interval
        self.jitter = jitter
        self.rng = rng or random.Random()
        self._backoff = Backoff(base=interval, cap=max(max_backoff, interval), rng=self.rng)

    def regular(self) -> float:
        return self.interval + self.rng.uniform(0, self.jitter)

    def backoff(self, attempt: int) -> float:
        # delay(n + 1) lies in [base * 2^(n-1), base * 2^n]: the first retry waits one to two intervals
        return self._backoff.delay(attempt + 1)


async def poll(
    what: Mapping[str, str],
    check: Callable[[], Awaitable[E | None]],
    confirmed: Callable[[E], bool],
    schedule: Schedule,
    sleep: Sleep,
) -> AsyncIterator[E]:
    event = await check()  # a failure of the first check is the caller's to handle
    failures = unconfirmed = 0
    while True:
        if event is not None:
            yield event
            if confirmed(event):
                unconfirmed = 0
                delay = schedule.regular()
            else:
                unconfirmed += 1
                delay = schedule.backoff(unconfirmed)
                log.warning("event not confirmed, proposing it again later",
                            extra={**what, "attempt": unconfirmed, "retry_in": round(delay, 3)})
        else:
            delay = schedule.backoff(failures) if failures else schedule.regular()
        await sleep(delay)
        try:
            event = await check()
        except Exception as exc:  # a daemon outlives a bad answer; CancelledError is not an Exception
            failures += 1
            event = None
            log.warning("check failed, backing off", exc_info=not isinstance(exc, ZosUpgradeError),
                        extra={**what, "error": f"{type(exc).__name__}: {exc}", "failures": failures})
        else:
            if failures:
                log.info("check succeeds again", extra={**what, "after_failures": failures})
            failures = 0
