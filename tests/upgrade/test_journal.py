"""The journal: legal transitions only, durable at every step, refuses what makes no sense."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from zos_upgrade.upgrade.errors import JournalError
from zos_upgrade.upgrade.journal import JOURNAL_NAME, Journal, JournalRecord, Phase
from zos_upgrade.upgrade.plan import Plan

FORWARD = [Phase.PRE_COPIED, Phase.STOPPED, Phase.BACKED_UP, Phase.APPLYING, Phase.APPLIED, Phase.MIGRATED,
           Phase.RESTARTED, Phase.PROBATION_PASSED, Phase.COMMITTED]


def record(**changes: object) -> JournalRecord:
    base = JournalRecord(
        id="t1", kind="boot", phase=Phase.PLANNED, source="tf-zos/zos:1.1.0.fl", expected_hash=None,
        target_key="boot", from_version="1.0.0", to_version="1.1.0", mount_md5="0" * 32,
        plan=Plan(add=["opt/x"]), new_manifest="{}", started=1.0, updated=1.0,
    )
    return msgspec.structs.replace(base, **changes)


def test_full_forward_path_is_persisted_at_every_step(tmp_path: Path) -> None:
    journal = Journal(tmp_path, clock=lambda: 5.0)
    journal.begin(record())
    for phase in FORWARD:
        journal.advance(phase)
        reread = Journal(tmp_path).load()
        assert reread is not None and reread.phase is phase and reread.plan.add == ["opt/x"]
    journal.finish()
    assert not (tmp_path / JOURNAL_NAME).exists()
    assert Journal(tmp_path).load() is None


def test_self_update_is_an_optional_step_after_planning(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.begin(record())
    journal.advance(Phase.SELF_UPDATED)
    journal.advance(Phase.PRE_COPIED)
    assert journal.record.phase is Phase.PRE_COPIED


@pytest.mark.parametrize(("start", "illegal"), [
    (Phase.PLANNED, Phase.APPLIED),            # skipping steps
    (Phase.PLANNED, Phase.COMMITTED),
    (Phase.STOPPED, Phase.PRE_COPIED),         # going back
    (Phase.APPLYING, Phase.SELF_UPDATED),      # self-update only before anything else moved
    (Phase.PROBATION_PASSED, Phase.ROLLING_BACK),  # rollback is begin_rollback's job
])
def test_illegal_transitions_are_refused_and_change_nothing(
    tmp_path: Path, start: Phase, illegal: Phase
) -> None:
    journal = Journal(tmp_path)
    journal.begin(record())
    path = [Phase.PLANNED, *FORWARD]
    for phase in path[1:path.index(start) + 1]:
        journal.advance(phase)
    with pytest.raises(JournalError, match=f"illegal transition '{start.value}' -> '{illegal.value}'"):
        journal.advance(illegal)
    reread = Journal(tmp_path).load()
    assert reread is not None and reread.phase is start


def test_rollback_records_why_and_where_and_is_allowed_only_before_commit(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.begin(record())
    journal.advance(Phase.PRE_COPIED)
    journal.advance(Phase.STOPPED)
    journal.begin_rollback("backup", "disk full")
    journal.begin_rollback("again", "ignored: already rolling back")
    reread = Journal(tmp_path).load()
    assert reread is not None and reread.phase is Phase.ROLLING_BACK
    assert reread.failure is not None
    assert (reread.failure.step, reread.failure.reason, reread.failure.from_phase) == (
        "backup", "disk full", Phase.STOPPED)
    with pytest.raises(JournalError, match="illegal transition"):
        journal.advance(Phase.BACKED_UP)
    journal.finish()

    committed = Journal(tmp_path)
    committed.begin(record())
    for phase in FORWARD:
        committed.advance(phase)
    with pytest.raises(JournalError, match="cannot roll back a committed transaction"):
        committed.begin_rollback("late", "too late")


def test_begin_refuses_while_a_journal_exists_and_finish_refuses_midway(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.begin(record())
    with pytest.raises(JournalError, match="already open"):
        Journal(tmp_path).begin(record(id="t2"))
    with pytest.raises(JournalError, match="cannot finish a transaction in phase 'planned'"):
        journal.finish()
    with pytest.raises(JournalError, match="must begin in phase 'planned'"):
        Journal(tmp_path / "other").begin(record(phase=Phase.APPLIED))


@pytest.mark.parametrize("content", [b"{not json", b'{"id": "x"}', b'{"phase": "flying"}'])
def test_a_garbled_journal_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / JOURNAL_NAME).write_bytes(content)
    with pytest.raises(JournalError, match="not a valid journal"):
        Journal(tmp_path).load()


def test_recovery_direction_per_phase() -> None:
    forward = {p for p in Phase if Journal.rolls_forward(p)}
    assert forward == {Phase.SELF_UPDATED, Phase.COMMITTED}
