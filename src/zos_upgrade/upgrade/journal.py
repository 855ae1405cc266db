"""The transaction record (``<state>/journal.json``): a small persisted state machine, our trusted set.

It holds only states that are valid and raises the moment an illegal transition is asked for; it
does no other I/O than writing itself durably (``fsutil.atomic_write_json``: temp, fsync, rename,
fsync dir) at every step. The upgrader reads it on start-up to decide what a crash left behind:

* phases before ``committed`` roll BACK (restore the data paths saved in ``data_saved``, the
  backup, remove added files, restore services), except ``self-updated``, which rolls FORWARD (the
  new program continues the transaction);
* ``committed`` (the new manifest was renamed in place: the commit point) rolls FORWARD;
* ``rolling-back`` continues the rollback (every rollback step is idempotent).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import msgspec

from zos_upgrade.fsutil import atomic_write_bytes, fsync_dir
from zos_upgrade.upgrade.datapaths import SavedPath
from zos_upgrade.upgrade.errors import JournalError, JournalUnreadable
from zos_upgrade.upgrade.plan import Plan
from zos_upgrade.upgrade.report import TransactionKind

__all__ = ["JOURNAL_NAME", "Holds", "Journal", "JournalRecord", "Phase", "TransactionKind"]

JOURNAL_NAME = "journal.json"
_MAX_JOURNAL_BYTES = 64 * 1024 * 1024


class Phase(StrEnum):
    PLANNED = "planned"                # staged tree fetched, plan recorded; node untouched
    SELF_UPDATED = "self-updated"      # the upgrader's own program was replaced; restart pending
    PRE_COPIED = "pre-copied"          # pre-copy hook ran
    STOPPED = "stopped"                # affected services stopped
    BACKED_UP = "backed-up"            # every file to replace/remove linked into the backup
    APPLYING = "applying"              # files being renamed into place
    APPLIED = "applied"                # every file in place, post-copy hook ran
    MIGRATED = "migrated"              # migrate hook ran
    RESTARTED = "restarted"            # services of the new release restarted
    PROBATION_PASSED = "probation-passed"  # services stayed up; post-start hook ran
    COMMITTED = "committed"            # new manifest in place: the commit point
    ROLLING_BACK = "rolling-back"      # undoing; continue on recovery


_PRE_COMMIT = (
    Phase.PLANNED, Phase.SELF_UPDATED, Phase.PRE_COPIED, Phase.STOPPED, Phase.BACKED_UP,
    Phase.APPLYING, Phase.APPLIED, Phase.MIGRATED, Phase.RESTARTED, Phase.PROBATION_PASSED,
)

# The only forward moves; rolling back is allowed from any pre-commit phase (see ``begin_rollback``).
_NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.PLANNED: frozenset({Phase.SELF_UPDATED, Phase.PRE_COPIED}),
    Phase.SELF_UPDATED: frozenset({Phase.PRE_COPIED}),
    Phase.PRE_COPIED: frozenset({Phase.STOPPED}),
    Phase.STOPPED: frozenset({Phase.BACKED_UP}),
    Phase.BACKED_UP: frozenset({Phase.APPLYING}),
    Phase.APPLYING: frozenset({Phase.APPLIED}),
    Phase.APPLIED: frozenset({Phase.MIGRATED}),
    Phase.MIGRATED: frozenset({Phase.RESTARTED}),
    Phase.RESTARTED: frozenset({Phase.PROBATION_PASSED}),
    Phase.PROBATION_PASSED: frozenset({Phase.COMMITTED}),
    Phase.COMMITTED: frozenset(),
    Phase.ROLLING_BACK: frozenset(),
}


class Failure(msgspec.Struct, forbid_unknown_fields=True):
    step: str
    reason: str
    from_phase: Phase  # how far the transaction got: tells the rollback what there is to undo


class Holds(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a rollback's commit changes in the failed-release memory (``node/failed.py``), by identity."""

    remember: str  # the release rolled back FROM: held like a failed release until cleared
    forget: str    # the release rolled back TO: an operator chose it, so no longer held


class JournalRecord(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Everything recovery needs without the network: what, from where, the plan, how far we got.

    Fields added later have defaults (a journal written before them still loads) and are omitted
    while at their default (a journal that does not use them still loads in an older upgrader).
    """

    id: str
    kind: TransactionKind
    phase: Phase
    source: str                  # where the release was found (VerifiedRelease.source): logs, status
    target_key: str              # boot: "boot"; bins: the package's fqdn (the manifest key)
    from_version: str
    to_version: str
    mount_md5: str               # "" for an uninstall (nothing mounted)
    plan: Plan
    new_manifest: str            # the manifest to commit, JSON text (absent for uninstall: "")
    started: float
    updated: float
    failure: Failure | None = None
    # node paths the hooks may change, as they were before the first hook (saved copies under
    # <state>/backup/data); recorded once, before any hook runs; rollback restores them
    data_saved: list[SavedPath] = msgspec.field(default_factory=list)
    # what re-mounting the release needs without the network (continuing after self-update): the
    # checked flist file (re-checked by ``mount_md5`` before use) and where its blocks live
    flist_file: str = ""
    block_store: str | None = None
    # a rollback (kind "rollback"): the failed-release memory changes its roll-forward makes
    holds: Holds | None = None
    # written by upgraders before the release sources (publisher mode re-checked this hash at every
    # mount); only read so that their journals still load
    expected_hash: str | None = None


class Journal:
    """The state machine over one ``journal.json``; every change is durable before it returns."""

    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir / JOURNAL_NAME
        self._clock = clock
        self._record: JournalRecord | None = None

    @property
    def record(self) -> JournalRecord:
        if self._record is None:
            raise JournalError(f"{self.path}: no open transaction")
        return self._record

    @property
    def open(self) -> bool:
        return self._record is not None

    def load(self) -> JournalRecord | None:
        """Read an unfinished journal left by an earlier process; None when there is none."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(_MAX_JOURNAL_BYTES + 1)
        except FileNotFoundError:
            self._record = None
            return None
        if len(data) > _MAX_JOURNAL_BYTES:
            raise JournalUnreadable(
                f"{self.path}: larger than {_MAX_JOURNAL_BYTES} bytes; not a journal of ours")
        try:
            self._record = msgspec.json.decode(data, type=JournalRecord, strict=True)
        except msgspec.DecodeError as exc:
            raise JournalUnreadable(f"{self.path}: not a valid journal: {exc}") from exc
        return self._record

    def begin(self, record: JournalRecord) -> None:
        """Open a transaction; refuses while another one is unfinished (recover it first)."""
        if self._record is not None or self.path.exists():
            raise JournalError(
                f"{self.path}: a transaction is already open; recover it before starting another"
            )
        if record.phase is not Phase.PLANNED:
            raise JournalError(f"a transaction must begin in phase 'planned', not {record.phase.value!r}")
        self._write(record)

    def advance(self, phase: Phase) -> None:
        """Move forward one legal step (``planned -> self-updated | pre-copied -> stopped -> ...``)."""
        current = self.record.phase
        if phase not in _NEXT[current]:
            allowed = ", ".join(sorted(p.value for p in _NEXT[current])) or "nothing"
            raise JournalError(
                f"{self.path}: illegal transition {current.value!r} -> {phase.value!r} (allowed: {allowed})"
            )
        self._write(msgspec.structs.replace(self.record, phase=phase, updated=self._clock()))

    def record_data_saved(self, saved: list[SavedPath]) -> None:
        """Record the saved data paths: once, before the first hook (``planned`` or ``self-updated``)."""
        current = self.record.phase
        if current not in (Phase.PLANNED, Phase.SELF_UPDATED):
            raise JournalError(
                f"{self.path}: data paths are saved before the first hook, not in phase {current.value!r}"
            )
        if self.record.data_saved:
            raise JournalError(f"{self.path}: data paths already saved; the first copies are the old data")
        self._write(msgspec.structs.replace(self.record, data_saved=list(saved), updated=self._clock()))

    def begin_rollback(self, step: str, reason: str) -> None:
        """Record why we undo; allowed from any phase before the commit point, and again while undoing."""
        current = self.record.phase
        if current is Phase.ROLLING_BACK:
            return
        if current not in _PRE_COMMIT:
            raise JournalError(
                f"{self.path}: cannot roll back a committed transaction (phase {current.value!r})"
            )
        self._write(
            msgspec.structs.replace(
                self.record,
                phase=Phase.ROLLING_BACK,
                failure=Failure(step=step, reason=reason, from_phase=current),
                updated=self._clock(),
            )
        )

    def finish(self) -> None:
        """Delete the journal: only after ``committed`` (rolled forward) or ``rolling-back`` (undone)."""
        current = self.record.phase
        if current not in (Phase.COMMITTED, Phase.ROLLING_BACK):
            raise JournalError(f"{self.path}: cannot finish a transaction in phase {current.value!r}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        fsync_dir(self.path.parent)
        self._record = None

    def _write(self, record: JournalRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, msgspec.json.encode(record), 0o600)
        self._record = record

    @staticmethod
    def rolls_forward(phase: Phase) -> bool:
        """What recovery does with a journal found in ``phase``: True forward, False back."""
        return phase in (Phase.SELF_UPDATED, Phase.COMMITTED)
