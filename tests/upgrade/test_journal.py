"""The journal: legal transitions only, durable at every step, refuses what makes no sense."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec
import pytest

from zos_upgrade.fsutil import TEMP_MARK
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


class DurableWrites:
    """Records, in order, the fsyncs (of a file or a directory, by path) and renames of this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        real_fsync, real_replace, real_unlink = os.fsync, os.replace, os.unlink

        def fsync(fd: int) -> None:
            kind = "fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file"
            self.calls.append((kind, os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            self.calls.append(("replace", f"{os.fspath(src)} -> {os.fspath(dst)}"))
            real_replace(src, dst)

        def unlink(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
            self.calls.append(("unlink", os.fspath(path)))
            real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "unlink", unlink)

    def take(self) -> list[tuple[str, str]]:
        calls, self.calls = self.calls, []
        return calls


def assert_durably_replaced(calls: list[tuple[str, str]], journal: Path) -> None:
    """One write of ``journal``: its temp file fsynced, renamed over it, then its directory fsynced."""
    assert [kind for kind, _ in calls] == ["fsync-file", "replace", "fsync-dir"], calls
    tmp = calls[0][1]
    assert TEMP_MARK in Path(tmp).name and Path(tmp).parent == journal.parent, calls
    assert calls[1][1] == f"{tmp} -> {journal}" and calls[2][1] == str(journal.parent), calls


def test_full_forward_path_is_persisted_at_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # durable means: fsynced, renamed into place, directory fsynced, at EVERY step before it returns
    state = tmp_path.resolve()
    journal_path = state / JOURNAL_NAME
    writes = DurableWrites(monkeypatch)
    journal = Journal(state, clock=lambda: 5.0)
    journal.begin(record())
    assert_durably_replaced(writes.take(), journal_path)
    for phase in FORWARD:
        journal.advance(phase)
        assert_durably_replaced(writes.take(), journal_path)
        reread = Journal(state).load()
        assert reread is not None and reread.phase is phase and reread.plan.add == ["opt/x"]
    journal.finish()
    # the delete is durable too: unlinked, then the directory fsynced
    assert writes.take() == [("unlink", str(journal_path)), ("fsync-dir", str(state))]
    assert not journal_path.exists()
    assert Journal(state).load() is None


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
