"""The rollout record's rules without I/O: the halt rule, the bounded history."""

from __future__ import annotations

import pytest

from zos_upgrade.hub.rollout import Report
from zos_upgrade.hubserver.rollout.record import HaltPolicy, RecordFull, ReleaseRecord


def rep(node: str, result: str) -> Report:
    return Report(node_id=node, version="2.0.0", version_before="1.0.0", version_after="2.0.0",
                  result=result)  # type: ignore[arg-type]


def test_halt_needs_the_sample_and_the_threshold() -> None:
    record = ReleaseRecord(repo="r", name="n")
    policy = HaltPolicy(threshold_percent=2.0, min_reports=50)
    record.apply(rep("bad", "failed"), 0.0, max_nodes=100, step=10, max_points=10)
    for i in range(48):
        record.apply(rep(f"ok{i}", "upgraded"), 1.0, max_nodes=100, step=10, max_points=10)
        record.apply(rep("w", "waiting"), 1.0, max_nodes=100, step=10, max_points=10)
    assert record.should_halt(policy) is None  # 49 attempts: below the sample (waiting is no attempt)
    record.apply(rep("ok48", "upgraded"), 2.0, max_nodes=100, step=10, max_points=10)
    # 1 of 50 is exactly 2 %: not past the threshold; one more failure is
    assert record.should_halt(policy) is None
    record.apply(rep("bad2", "rolled-back"), 3.0, max_nodes=100, step=10, max_points=10)
    assert record.should_halt(policy) == "2 of 51 nodes failed or rolled back (3.9 % > threshold 2 %)"


def test_history_is_one_point_per_step_and_bounded() -> None:
    record = ReleaseRecord(repo="r", name="n")
    for i in range(1000):
        record.apply(rep(f"n{i}", "upgraded"), float(i), max_nodes=10_000, step=10, max_points=40)
    assert len(record.history) <= 40
    assert record.history[0].at == 9.0 and record.history[-1].at == 999.0
    assert record.history[-1].upgraded == 1000
    ats = [p.at for p in record.history]
    assert ats == sorted(ats)
    with pytest.raises(RecordFull):
        record.apply(rep("one-more", "upgraded"), 1000.0, max_nodes=1000, step=10, max_points=40)


def test_recount_matches_the_running_tally() -> None:
    record = ReleaseRecord(repo="r", name="n")
    for i, result in enumerate(["upgraded", "failed", "upgraded", "waiting", "rolled-back"]):
        record.apply(rep(f"n{i % 3}", result), float(i), max_nodes=10, step=1, max_points=10)
    kept = record.counts()
    record.recount()
    assert record.counts() == kept == {"waiting": 1, "upgraded": 1, "failed": 0, "rolled-back": 1}
