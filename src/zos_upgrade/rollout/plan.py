"""A phased rollout plan: how much of the fleet may take a release at a given time (pure, no I/O).

A plan rides in a release's signed metadata (the TUF target's custom field
``{"zos": {"rollout": {...}}}``), so nothing between the release engineer and the node can speed a
rollout up. Its document, strictly validated by :func:`parse_plan`::

    {"start": "2026-12-05T08:00:00Z", "duration": 86400, "failure_threshold": 2}
    {"start": "2026-12-05T08:00:00Z",
     "steps": [{"offset": 0, "percent": 1}, {"offset": 3600, "percent": 10},
               {"offset": 86400, "percent": 100}],
     "failure_threshold": 5}

``duration`` ramps linearly from 0 % at ``start`` to 100 % at ``start + duration`` seconds;
``steps`` hold each percentage from ``start + offset`` until the next step (0 % before the first).
``failure_threshold`` (percent of the nodes that reported, optional) is the hub's to act on: past it
(:func:`exceeds_threshold`) the rollout halts (a halt can only stop upgrades, so it may arrive
unsigned).

Each node computes a stable :func:`bucket` in [0, 100) from its id and the release, and takes the
release once :func:`percent_at` is above its bucket (:func:`admits`): the same node falls in the same
bucket for a release on every poll, different releases shuffle the fleet so the same nodes are not
always first, and a growing percentage only ever adds nodes.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

import msgspec

from zos_upgrade.rollout.errors import RolloutError

__all__ = ["RolloutPlan", "Step", "admits", "bucket", "exceeds_threshold", "opens_at", "parse_plan",
           "percent_at", "plan_document"]

# a plan longer than a year is a typo (seconds instead of minutes...), not a rollout
MAX_SPAN = 366 * 86400.0
MAX_STEPS = 100

Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SPAN)]


class Step(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    offset: Seconds   # seconds after the plan's start
    percent: Percent  # of the fleet admitted from then on


class RolloutPlan(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    start: Annotated[datetime, msgspec.Meta(tz=True)]  # RFC 3339 with its zone, e.g. ...Z
    duration: Seconds | None = None                     # a linear ramp to 100 % ...
    steps: tuple[Step, ...] | None = None               # ... or explicit steps (one of the two)
    failure_threshold: Percent | None = None            # None: never halted automatically

    @property
    def start_ts(self) -> float:
        return self.start.timestamp()


def parse_plan(document: object, *, source: str = "rollout plan") -> RolloutPlan:
    """A plan from its decoded JSON document (a dict) or its JSON bytes; RolloutError naming what
    was wrong. Everything a plan can say is checked here, so a plan that parses is one the math
    below can run."""
    try:
        if isinstance(document, (bytes, bytearray, memoryview, str)):
            plan = msgspec.json.decode(document, type=RolloutPlan)
        else:
            plan = msgspec.convert(document, type=RolloutPlan)
    except msgspec.ValidationError as exc:
        raise RolloutError(f"{source}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise RolloutError(f"{source}: not JSON: {exc}") from exc
    _check(plan, source)
    return plan


def _check(plan: RolloutPlan, source: str) -> None:
    if (plan.duration is None) == (plan.steps is None):
        raise RolloutError(f"{source}: give exactly one of `duration` (seconds of a linear ramp) or "
                           "`steps` (a list of {\"offset\", \"percent\"})")
    if not math.isfinite(plan.start_ts):
        raise RolloutError(f"{source}: start = {plan.start!s} is not a usable time")
    if plan.steps is None:
        return
    if not plan.steps or len(plan.steps) > MAX_STEPS:
        raise RolloutError(f"{source}: steps: expected 1 to {MAX_STEPS} steps, got {len(plan.steps)}")
    for i, (prev, step) in enumerate(zip(plan.steps, plan.steps[1:], strict=False), start=1):
        if step.offset <= prev.offset:
            raise RolloutError(f"{source}: steps[{i}].offset = {step.offset:g} must be above "
                               f"steps[{i - 1}].offset = {prev.offset:g} (steps in time order)")
        if step.percent < prev.percent:
            raise RolloutError(f"{source}: steps[{i}].percent = {step.percent:g} is below "
                               f"steps[{i - 1}].percent = {prev.percent:g}: a rollout never shrinks")


def percent_at(plan: RolloutPlan, now: float) -> float:
    """The percentage of the fleet admitted at ``now`` (seconds since the epoch), 0 to 100."""
    elapsed = now - plan.start_ts
    if elapsed < 0:
        return 0.0
    if plan.duration is not None:
        if plan.duration == 0 or elapsed >= plan.duration:
            return 100.0
        return 100.0 * elapsed / plan.duration
    assert plan.steps is not None  # parse_plan guarantees one of the two
    current = 0.0
    for step in plan.steps:
        if step.offset > elapsed:
            break
        current = step.percent
    return current


def bucket(node_id: str, release: str) -> float:
    """This node's place in [0, 100) for ``release``: the first 8 bytes of sha256(id NUL release)
    as a fraction of 2**64. The NUL keeps ("ab", "c") and ("a", "bc") apart."""
    import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

    digest = hashlib.sha256(node_id.encode() + b"\x00" + release.encode()).digest()
    return int.from_bytes(digest[:8], "big") * 100.0 / 2**64


def admits(plan: RolloutPlan, node_id: str, release: str, now: float) -> bool:
    """The node may take ``release`` now: the rollout's percentage is above its bucket."""
    return percent_at(plan, now) > bucket(node_id, release)


def opens_at(plan: RolloutPlan, node_bucket: float) -> float | None:
    """The earliest time the percentage passes ``node_bucket`` (what ``status`` shows a waiting node);
    None when the plan never gets that far (steps that stop short of it)."""
    start = plan.start_ts
    if plan.duration is not None:
        # the percentage passes the bucket just after this instant; a poll then admits the node
        return start + plan.duration * node_bucket / 100.0
    assert plan.steps is not None
    for step in plan.steps:
        if step.percent > node_bucket:
            return start + step.offset
    return None


def exceeds_threshold(plan: RolloutPlan, failed: int, reported: int) -> bool:
    """The release's failures passed the plan's threshold (the hub halts the rollout): more than
    ``failure_threshold`` percent of the ``reported`` transactions ``failed``. Never for a plan
    without a threshold or before any report."""
    if plan.failure_threshold is None or reported <= 0:
        return False
    if failed < 0 or failed > reported:
        raise ValueError(f"failed = {failed} must be between 0 and reported = {reported}")
    return failed * 100 > plan.failure_threshold * reported


def plan_document(plan: RolloutPlan) -> dict[str, Any]:
    """The plan as the JSON document :func:`parse_plan` reads (for metadata writers and tests)."""
    doc: dict[str, Any] = msgspec.to_builtins(plan)
    return {k: v for k, v in doc.items() if v is not None}
