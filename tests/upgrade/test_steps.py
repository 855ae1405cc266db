"""The steps table reads like SPEC 11: its order, journal phases and crash points are the contract."""

from __future__ import annotations

from zos_upgrade.upgrade.crash import CRASH_POINTS
from zos_upgrade.upgrade.journal import Phase
from zos_upgrade.upgrade.steps import STEPS, OnFailure

# the crash points reached inside a step rather than after it (and the step they are in)
INSIDE = {"mid-apply": "apply", "after-manifest": "commit", "after-boot-files": "commit"}


def test_the_steps_run_in_spec_order() -> None:
    assert [s.name for s in STEPS] == [
        "preflight", "fetch", "plan", "self", "program-start", "save-data", "pre-copy", "lock", "stop",
        "rollback", "backup", "apply", "post-copy", "migrate", "restart", "probation", "post-start", "commit"]


def test_every_crash_point_sits_where_the_table_says_in_transaction_order() -> None:
    reached: list[str] = []
    for step in STEPS:
        reached += [point for point, inside in INSIDE.items() if inside == step.name]
        if step.crash_after:
            reached.append(step.crash_after)
    # mid-apply is inside apply, before the after-apply of the next row: put it in its place
    assert sorted(reached, key=CRASH_POINTS.index) == list(CRASH_POINTS)
    after = [s.crash_after for s in STEPS if s.crash_after]
    assert after == [p for p in CRASH_POINTS if p not in INSIDE]


def test_journal_phases_are_recorded_in_the_order_the_journal_allows() -> None:
    recorded = [p for s in STEPS for p in (s.phase_before, s.phase_after) if p is not None]
    assert recorded == [Phase.PLANNED, Phase.SELF_UPDATED, Phase.PRE_COPIED, Phase.STOPPED, Phase.BACKED_UP,
                        Phase.APPLYING, Phase.APPLIED, Phase.MIGRATED, Phase.RESTARTED,
                        Phase.PROBATION_PASSED, Phase.COMMITTED]


def test_refused_before_the_journal_rolled_back_until_commit_then_forward() -> None:
    policy = {s.name: s.on_failure for s in STEPS}
    assert policy.pop("preflight") is policy.pop("fetch") is policy.pop("plan") is OnFailure.REFUSE
    assert policy.pop("commit") is OnFailure.ROLL_FORWARD
    assert set(policy.values()) == {OnFailure.ROLL_BACK}
    commit = STEPS[-1]
    assert commit.phase_before is Phase.COMMITTED  # the commit point comes before its work
    assert [s.name for s in STEPS if s.exits] == ["program-start"]
