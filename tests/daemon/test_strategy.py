"""The rollout strategy's gates as the policies ask them: what blocks, what it says, what passes."""

from __future__ import annotations

from datetime import UTC, datetime

from zos_upgrade.daemon.strategy import RolloutGate, WindowGate
from zos_upgrade.rollout import bucket, parse_plan
from zos_upgrade.rollout.windows import Calendar, Window

SAT_2230 = datetime(2026, 12, 5, 22, 30, tzinfo=UTC).timestamp()


def test_window_gate_blocks_outside_and_names_the_next_opening() -> None:
    now = [SAT_2230 - 60]
    gate = WindowGate(Calendar([Window(("Sat",), 22 * 60 + 30, 60)]), clock=lambda: now[0])
    blocked = gate.blocked("boot upgrade x 1.1.0", to_version="1.1.0", at=now[0], version="1.0.0")
    assert blocked is not None and blocked.result == "waiting" and not blocked.failed and not blocked.applied
    assert "opens Sat 2026-12-05 22:30 UTC" in blocked.detail
    now[0] = SAT_2230
    assert gate.blocked("x", to_version=None, at=now[0], version="1.0.0") is None  # bins too, inside
    assert gate.next_open() == SAT_2230 and gate.closes_at() == SAT_2230 + 3600


def test_rollout_gate_only_speaks_of_releases_with_a_plan() -> None:
    plan = parse_plan({"start": "2026-12-05T00:00:00Z", "duration": 1000})
    start = plan.start_ts
    mine = bucket("node-1", "2.0.0")
    now = [start]
    gate = RolloutGate("node-1", lambda v: plan if v == "2.0.0" else None, clock=lambda: now[0])
    assert gate.blocked("bins", to_version=None, at=0, version="1.0.0") is None
    assert gate.blocked("boot 1.9.0", to_version="1.9.0", at=0, version="1.0.0") is None  # no plan
    blocked = gate.blocked("boot 2.0.0", to_version="2.0.0", at=0, version="1.0.0")
    assert blocked is not None and blocked.result == "waiting" and "phased rollout at 0.0%" in blocked.detail
    now[0] = start + 10 * mine + 1
    assert gate.blocked("boot 2.0.0", to_version="2.0.0", at=0, version="1.0.0") is None
