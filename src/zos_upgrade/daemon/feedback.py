"""Fleet feedback from the node's side: report how each transaction ended, read a release's halt.

Best effort by design: a report is queued durably (:mod:`zos_upgrade.node.reports`) when a
transaction ends and sent later, in the background, oldest first; a hub that is down or refuses
stops the sending until the next try and never fails, delays or changes a transaction. The halt
flag is read unsigned: it can only keep a node from starting a release, never make it start one;
a hub that cannot answer it is taken as "not halted" (the same hub serves the release: a node that
cannot reach it does not upgrade from it either).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, Protocol, TypeVar

from zos_upgrade.daemon.outcome import Result
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.hub.rollout import HaltFlag, Report, ReportResult
from zos_upgrade.node.reports import ReportQueue

__all__ = ["FleetFeedback", "FleetPort"]

log = logging.getLogger(__name__)

_RESULTS: dict[Result, ReportResult] = {"upgraded": "upgraded", "rolled-back": "rolled-back",
                                        "failed": "failed", "error": "failed",
                                        "rollback-incomplete": "failed"}


class FleetPort(Protocol):
    """What feedback needs of the hub (HubClient with the node's token)."""

    async def report(self, fqdn: str, report: Report) -> bool: ...
    async def halt_flag(self, fqdn: str) -> HaltFlag: ...


P = TypeVar("P", bound=FleetPort)


class FleetFeedback(Generic[P]):
    def __init__(self, queue: ReportQueue, hub: P, node_id: str, group: str = "", *,
                 timeout: float = 10.0) -> None:
        self.queue = queue
        self.hub = hub
        self.node_id = node_id
        self.group = group
        self.timeout = timeout
        self._waiting: set[str] = set()  # releases this process already reported waiting for

    def ended(self, release: str, *, version: str, version_before: str, version_after: str,
              result: Result, reason: str = "", duration: float = 0.0) -> None:
        """Queue the report of a transaction on ``release`` (repo/name); never raises."""
        kind = _RESULTS.get(result)
        if kind is None:
            return  # held, paused, up to date: no transaction ran
        self._queue(release, Report(
            node_id=self.node_id, group=self.group, version=version, version_before=version_before,
            version_after=version_after, result=kind, reason=reason[:1024],
            durations={"total": min(max(duration, 0.0), 30 * 86400.0)}))

    def waiting(self, release: str, *, version: str, current: str, reason: str) -> None:
        """Queue a ``waiting`` report for ``release``, once per release and process."""
        if release in self._waiting:
            return
        self._waiting.add(release)
        self._queue(release, Report(node_id=self.node_id, group=self.group, version=version,
                                    version_before=current, version_after=current, result="waiting",
                                    reason=reason[:1024]))

    def _queue(self, release: str, report: Report) -> None:
        try:
            self.queue.put(release, report)
        except OSError as exc:  # a full disk must not turn a committed upgrade into a failure
            log.error("fleet report not queued", extra={"release": release, "error": str(exc)})

    async def flush(self) -> int:
        """Send the queued reports, oldest first, until one fails; how many were delivered."""
        sent = 0
        for item in self.queue.pending():
            try:
                await asyncio.wait_for(self.hub.report(item.release, item.report), self.timeout)
            except (ZosUpgradeError, OSError, TimeoutError) as exc:
                status = getattr(exc, "status", None)
                if isinstance(status, int) and 400 <= status < 500 and status not in (401, 408, 429):
                    # the hub will never take this one (a release it does not store...): drop it
                    log.error("fleet report refused, dropped", extra={"release": item.release,
                                                                      "error": str(exc)})
                    self.queue.done(item)
                    continue
                log.warning("fleet report not delivered, retried later",
                            extra={"release": item.release, "error": str(exc)})
                break
            self.queue.done(item)
            sent += 1
        return sent

    async def halted(self, release: str) -> str | None:
        """Why ``release``'s rollout is halted on the hub, or None (also when the hub cannot say)."""
        try:
            flag = await asyncio.wait_for(self.hub.halt_flag(release), self.timeout)
        except (ZosUpgradeError, OSError, TimeoutError) as exc:
            log.warning("halt flag unreadable, taken as not halted", extra={"release": release,
                                                                             "error": str(exc)})
            return None
        return (flag.reason or "halted") if flag.halted else None
