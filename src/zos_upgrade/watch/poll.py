"""Watchers: notice that something newer exists (SPEC 9) and tell the upgrader, one event at a time.

Each ``watch()`` is an async generator run by the consumer's own task: it starts no task of its
own, so cancelling the consumer ends it and leaks nothing. The rules, shared by all three watchers
through :func:`_poll`:

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

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.hub.models import FlistInfo
from zos_upgrade.hub.names import split_fqdn, validate_name
from zos_upgrade.net import Backoff
from zos_upgrade.node.events import Event, FListEvent, ReleaseEvent, RepoEvent
from zos_upgrade.publisher.base import Publisher
from zos_upgrade.versions import Version

__all__ = ["FListRepoWatcher", "FListSemverWatcher", "PublisherWatcher", "Watcher"]

log = logging.getLogger(__name__)

E = TypeVar("E")
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_MAX_BACKOFF = 3600.0
# only these are packages a node can install; tags and taglinks are folders of links
_INSTALLABLE = ("regular", "symlink")


class Watcher(Protocol):
    def watch(self) -> AsyncIterator[Event]: ...


class _Schedule:
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


async def _poll(
    what: Mapping[str, str],
    check: Callable[[], Awaitable[E | None]],
    confirmed: Callable[[E], bool],
    schedule: _Schedule,
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
        hub: HubClient,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        self.repo, _ = split_fqdn(flist)
        self.flist = flist
        self.current = current
        self._hub = hub
        self._schedule = _Schedule(interval, jitter, rng, max_backoff)
        self._sleep = sleep
        self._ignored: Version | None = None

    def confirm(self, version: Version) -> None:
        """The consumer's upgrade to ``version`` succeeded: never propose it (or anything older) again."""
        if version > self.current:
            self.current = version

    async def check(self) -> FListEvent | None:
        """Ask the hub once; the event if the link's version is newer than ``current``."""
        info = await self._hub.info(self.flist)
        event = FListEvent(self.repo, info, self._hub)
        version = event.version()  # a target without a version is an error, not "0.0.0 < current"
        if version > self.current:
            return event
        if version < self.current and version != self._ignored:
            log.info("hub link points below the node's version; ignored",
                     extra={"flist": self.flist, "remote": str(version), "current": str(self.current)})
        self._ignored = version
        return None

    def watch(self) -> AsyncIterator[FListEvent]:
        return _poll({"flist": self.flist}, self.check, lambda e: not e.version() > self.current,
                     self._schedule, self._sleep)


class FListRepoWatcher:
    """Watch a repository of packages (``tf-zos-bins``): what appeared, changed, or disappeared.

    ``current`` maps ``repo/name`` to what the node has installed; keys of other repositories are
    not this watcher's business and are never proposed for deletion.
    """

    def __init__(
        self,
        repo: str,
        current: Mapping[str, RepoFList | FlistInfo],
        interval: float,
        *,
        hub: HubClient,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        self.repo = validate_name(repo, "repository")
        self.current = _as_flists(current)
        self._hub = hub
        self._schedule = _Schedule(interval, jitter, rng, max_backoff)
        self._sleep = sleep
        self._confirmations = 0
        self._proposed: dict[str, RepoFList] = {}  # ``all`` of the last event emitted

    def confirm(self, all: Mapping[str, RepoFList | FlistInfo] | None = None) -> None:
        """The consumer applied an event: ``all`` is what the node has now (default: the ``all`` of
        the last event emitted). Pass a smaller mapping when only part of it could be installed:
        the rest is proposed again."""
        self.current = _as_flists(all) if all is not None else dict(self._proposed)
        self._confirmations += 1

    async def diff(self) -> tuple[dict[str, RepoFList], list[RepoFList], list[RepoFList]]:
        """``(all, to_add, to_del)``: every installable remote flist; those missing locally or whose
        ``updated``, ``md5`` or target changed; the local entries (the real ones) missing remotely."""
        entries = await self._hub.list(self.repo)
        remote: dict[str, RepoFList] = {}
        for entry in entries:
            if entry.type in _INSTALLABLE:
                flist = RepoFList(self.repo, entry, self._hub)
                remote[flist.fqdn()] = flist
        to_add = [flist for key, flist in sorted(remote.items())
                  if key not in self.current or _changed(self.current[key], flist)]
        prefix = self.repo + "/"
        to_del = [flist for key, flist in sorted(self.current.items())
                  if key.startswith(prefix) and key not in remote]
        return remote, to_add, to_del

    async def check(self) -> RepoEvent | None:
        everything, to_add, to_del = await self.diff()
        if not to_add and not to_del:
            return None
        self._proposed = everything
        return RepoEvent(self.repo, to_add, to_del, all=everything)

    def watch(self) -> AsyncIterator[RepoEvent]:
        seen = self._confirmations

        def confirmed(_: RepoEvent) -> bool:
            nonlocal seen
            fresh, seen = self._confirmations != seen, self._confirmations
            return fresh

        return _poll({"repo": self.repo}, self.check, confirmed, self._schedule, self._sleep)


def _as_flists(mapping: Mapping[str, RepoFList | FlistInfo]) -> dict[str, RepoFList]:
    out: dict[str, RepoFList] = {}
    for key, value in mapping.items():
        if isinstance(value, RepoFList):
            out[key] = value
        else:
            repo, _ = split_fqdn(key)
            out[key] = RepoFList(repo, value)
    return out


def _resolved(flist: RepoFList) -> str | None:
    try:
        return flist.absolute()
    except ZosUpgradeError:
        return None


def _changed(local: RepoFList, remote: RepoFList) -> bool:
    if local.info.updated != remote.info.updated or local.info.type != remote.info.type:
        return True
    old_md5 = getattr(local.info, "md5", "")
    new_md5 = getattr(remote.info, "md5", "")
    if old_md5 and new_md5 and old_md5 != new_md5:  # listings carry no md5: compare when both know it
        return True
    return _resolved(local) != _resolved(remote)


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
        self._schedule = _Schedule(interval, jitter, rng, max_backoff)
        self._sleep = sleep

    def confirm(self, version: Version) -> None:
        """The node now runs ``version``: the next event proposes what comes after it."""
        if version > self.current:
            self.current = version

    async def check(self) -> ReleaseEvent | None:
        latest = await self.publisher.latest()
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
        return _poll({"publisher": where}, self.check,
                     lambda e: not e.version > self.current, self._schedule, self._sleep)
