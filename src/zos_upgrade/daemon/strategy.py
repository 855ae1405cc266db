"""When a transaction may START: the ``periodic`` strategy's maintenance windows and the phased
rollout plan, as policy rules (each a gate :meth:`zos_upgrade.daemon.policy.Policy.guarded` asks,
after the operator's hold and pause, before the failed-release memory).

A blocked transaction ends the round as ``waiting`` (not a failure, not confirmed): the next round
proposes it again, and the daemon's next round comes no later than the next window's opening.
The ``fleet_lock`` strategy is not a gate here: it lets the transaction start and waits inside it,
just before the services stop (``daemon/fleetlock.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from zos_upgrade.config import Config
from zos_upgrade.daemon.outcome import CheckOutcome
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.rollout import RolloutError, RolloutPlan, bucket, opens_at, percent_at
from zos_upgrade.rollout.windows import Calendar, Window, parse_time

__all__ = ["PlanLookup", "RolloutGate", "WindowGate", "calendar_of", "utc"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# the rollout plan of a release (its version), None: a release without one (everyone at once). Under
# [trust] root the verified TUF metadata answer it (daemon/plans.py: a target's custom
# {"zos": {"rollout": ...}}); a ZosUpgradeError: the plan is there but unusable (not started)
PlanLookup = Callable[[str], "RolloutPlan | None"]


def calendar_of(config: Config) -> Calendar:
    """The ``[[rollout.periodic.window]]`` tables as a calendar (the config checked their values)."""
    return Calendar(Window(tuple(w.days), parse_time(w.start_time), w.length_minutes)
                    for w in config.rollout.periodic.window)


def utc(stamp: float) -> str:
    """A time as status and logs show it: ``Sat 2026-12-05 22:30 UTC``."""
    return datetime.fromtimestamp(stamp, UTC).strftime("%a %Y-%m-%d %H:%M UTC")


class WindowGate:
    """``periodic``: a transaction starts only inside one of the windows."""

    def __init__(self, calendar: Calendar, *, clock: Clock = time.time) -> None:
        self.calendar = calendar
        self._clock = clock

    def next_open(self) -> float | None:
        return self.calendar.next_open(self._clock())

    def closes_at(self) -> float | None:
        return self.calendar.closes_at(self._clock())

    def blocked(self, what: str, *, to_version: str | None, at: float, version: str) -> CheckOutcome | None:
        now = self._clock()
        if self.calendar.contains(now):
            return None
        opens = self.calendar.next_open(now)
        when = utc(opens) if opens is not None else "never (no window configured)"
        log.info("outside the maintenance windows; not started", extra={"what": what, "next_window": opens})
        return CheckOutcome(at, "waiting", version,
                            f"{what}: waiting for the next maintenance window, opens {when}")


class RolloutGate:
    """A phased rollout: a release starts here once its plan's percentage is above this node's bucket."""

    def __init__(self, node_id: str, plans: PlanLookup, *, clock: Clock = time.time) -> None:
        self.node_id = node_id
        self._plans = plans
        self._clock = clock

    def blocked(self, what: str, *, to_version: str | None, at: float, version: str) -> CheckOutcome | None:
        if to_version is None:  # a bins package is not a release a plan speaks of
            return None
        try:
            plan = self._plans(to_version)
        except ZosUpgradeError as exc:
            # an invalid signed plan is the release engineers' to fix, unverified metadata the trust
            # layer's; either way the release must not start (taking it at once would be the
            # speed-up the plan exists to prevent)
            why = "is invalid" if isinstance(exc, RolloutError) else "cannot be read"
            log.error(f"the release's rollout plan {why}; not started",
                      extra={"what": what, "error": str(exc)})
            return CheckOutcome(at, "failed", version, f"{what}: not started: its rollout plan {why}: {exc}")
        if plan is None:
            return None
        now = self._clock()
        mine, share = bucket(self.node_id, to_version), percent_at(plan, now)
        if share > mine:
            return None
        opens = opens_at(plan, mine)
        when = (f"reaches it around {utc(opens)}" if opens is not None
                else "never reaches it (the plan stops short)")
        log.info("phased rollout has not reached this node; not started",
                 extra={"what": what, "bucket": round(mine, 3), "percent": round(share, 3)})
        return CheckOutcome(at, "waiting", version,
                            f"{what}: phased rollout at {share:.1f}%, this node's bucket is {mine:.1f}: "
                            f"the rollout {when}")
