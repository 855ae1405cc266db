"""One release's rollout record: the latest report of each node, the counts over time, the halt.

Pure rules, no I/O (the store persists it): a node counts once, by its latest report (a node that
failed and then upgraded on a retry counts as upgraded); the history keeps one point per
``step`` seconds and halves itself when full, so a record stays bounded however long a rollout
runs; the halt rule is :meth:`ReleaseRecord.should_halt`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import Struct

from zos_upgrade.hub.rollout import RESULTS, Report, ReportResult
from zos_upgrade.rollout import exceeds_threshold, parse_plan

__all__ = ["Halt", "HaltPolicy", "NodeState", "Point", "RecordFull", "ReleaseRecord"]

FAILURES: tuple[ReportResult, ...] = ("failed", "rolled-back")
ATTEMPTS: tuple[ReportResult, ...] = ("upgraded", "failed", "rolled-back")


class RecordFull(Exception):
    """A new node would pass the per-release bound (the store answers 507)."""


@dataclass(frozen=True)
class HaltPolicy:
    """When a rollout halts itself: failures over attempts above ``threshold_percent`` once at least
    ``min_reports`` nodes tried the release (a minimum sample, so one early failure of three is not
    a 33 % failure rate)."""

    threshold_percent: float = 2.0
    min_reports: int = 20


class NodeState(Struct, array_like=True, frozen=True):
    group: str
    result: ReportResult
    version_before: str
    version_after: str
    reason: str
    at: float
    durations: dict[str, float]


class Point(Struct, array_like=True, frozen=True):
    """The counts at time ``at`` (hub clock)."""

    at: float
    waiting: int
    upgraded: int
    failed: int
    rolled_back: int


class Halt(Struct, frozen=True):
    at: float
    by: str  # "auto" or the repository whose token halted it
    reason: str


class ReleaseRecord(Struct):
    repo: str
    name: str
    nodes: dict[str, NodeState] = msgspec.field(default_factory=dict)
    history: list[Point] = msgspec.field(default_factory=list)
    halt: Halt | None = None
    # failures counted when a person resumed: the automatic halt fires again only on new ones
    failures_at_resume: int = 0
    # the release's rollout plan as its engineer gave it to the hub (the document of
    # zos_upgrade.rollout.parse_plan); its failure_threshold wins over the hub's default
    plan: dict[str, Any] | None = None
    schema: int = 1

    # the counts by latest result, kept as reports arrive (a fleet of 10,000 is not recounted per
    # report); recounted from ``nodes`` when a record is loaded (:meth:`recount`)
    tally: dict[str, int] = msgspec.field(default_factory=dict)

    def recount(self) -> None:
        found = Counter(state.result for state in self.nodes.values())
        self.tally = {result: found.get(result, 0) for result in RESULTS}

    def counts(self) -> dict[str, int]:
        return {result: self.tally.get(result, 0) for result in RESULTS}

    def apply(self, report: Report, now: float, *, max_nodes: int, step: float, max_points: int) -> None:
        """Record ``report`` (received at ``now``); :class:`RecordFull` for one node too many."""
        if report.node_id not in self.nodes and len(self.nodes) >= max_nodes:
            raise RecordFull(f"release {self.repo}/{self.name} already has reports of {max_nodes} nodes")
        old = self.nodes.get(report.node_id)
        if old is not None:
            self.tally[old.result] = self.tally.get(old.result, 1) - 1
        self.tally[report.result] = self.tally.get(report.result, 0) + 1
        self.nodes[report.node_id] = NodeState(
            group=report.group, result=report.result, version_before=report.version_before,
            version_after=report.version_after, reason=report.reason, at=now,
            durations=dict(report.durations))
        self._point(now, step, max_points)

    def _point(self, now: float, step: float, max_points: int) -> None:
        c = self.counts()
        point = Point(now, c["waiting"], c["upgraded"], c["failed"], c["rolled-back"])
        if self.history and self.history[-1].at // step == now // step:
            self.history[-1] = point  # one point per step: the latest counts of this step
        else:
            self.history.append(point)
        if len(self.history) > max_points:
            # keep the first and last and every other one between: the curve's shape, half the points
            self.history = [*self.history[:-1:2], self.history[-1]]

    def failures(self) -> int:
        c = self.counts()
        return sum(c[r] for r in FAILURES)

    def should_halt(self, policy: HaltPolicy) -> str | None:
        """Why the rollout must halt now, or None (also None when it is already halted)."""
        if self.halt is not None:
            return None
        c = self.counts()
        attempts = sum(c[r] for r in ATTEMPTS)
        failures = sum(c[r] for r in FAILURES)
        if attempts < policy.min_reports or failures <= self.failures_at_resume:
            return None
        threshold = policy.threshold_percent
        if self.plan is not None:
            # the plan's own threshold, by the rule the node's side shares (None: never halted)
            planned = parse_plan(self.plan, source=f"rollout plan of {self.repo}/{self.name}")
            if not exceeds_threshold(planned, failures, attempts):
                return None
            threshold = planned.failure_threshold or 0.0
        elif failures * 100 <= threshold * attempts:
            return None
        return (f"{failures} of {attempts} nodes failed or rolled back "
                f"({failures * 100 / attempts:.1f} % > threshold {threshold:g} %)")

    def reasons(self, limit: int = 20) -> list[tuple[str, int]]:
        """The failures' reasons, most frequent first."""
        tally = Counter(s.reason or "(no reason given)" for s in self.nodes.values() if s.result in FAILURES)
        return tally.most_common(limit)
