"""The last transactions on this node and how each ended: ``<state_dir>/transactions.json``.

The upgrader appends one entry per finished transaction (committed, rolled back, refused) where it
writes ``last-transaction.json`` (:func:`zos_upgrade.upgrade.outcome.write_result_doc`), so the
history survives daemon restarts and covers transactions run outside the daemon too. The file is
bounded to :data:`MAX_ENTRIES` (oldest dropped) and written durably. It is a report, not a source
of truth: a damaged file is shown as such by ``status`` and replaced by the next append (logged),
never a reason to fail a transaction.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import atomic_write_json
from zos_upgrade.node.documents import read_document

__all__ = ["HISTORY_FILE", "MAX_ENTRIES", "HistoryError", "TransactionEntry", "append_transaction",
           "history_path", "read_history"]

log = logging.getLogger(__name__)

HISTORY_FILE = "transactions.json"
MAX_ENTRIES = 20
_MAX_BYTES = 1 << 20
_MAX_REASON = 2000  # a failure reason carries service output: keep the file small


class HistoryError(ZosUpgradeError):
    """``transactions.json`` exists but is unreadable, too large or not a transaction history."""


class TransactionEntry(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """One finished transaction (the fields of ``last-transaction.json``)."""

    kind: str  # boot, bin-install, bin-uninstall
    from_version: str
    to_version: str
    result: str  # committed, rolled-back, refused
    time: float  # unix time it ended
    step: str = ""  # the step that failed (rolled-back, refused)
    reason: str = ""


class _Document(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    format: int = 1
    transactions: list[TransactionEntry] = msgspec.field(default_factory=list)


def history_path(state_dir: Path) -> Path:
    return state_dir / HISTORY_FILE


def read_history(state_dir: Path) -> list[TransactionEntry]:
    """Oldest first; [] when there is no history yet. Raises :class:`HistoryError` on a damaged file."""
    document = read_document(history_path(state_dir), _Document, limit=_MAX_BYTES,
                             expected="a short transaction list", what="a transaction history",
                             error=HistoryError)
    return [] if document is None else document.transactions


def append_transaction(state_dir: Path, doc: dict[str, Any]) -> None:
    """Add one result document (``write_result_doc``'s) and keep the last :data:`MAX_ENTRIES`."""
    entry = msgspec.convert({**doc, "reason": str(doc.get("reason", ""))[:_MAX_REASON]},
                            type=TransactionEntry, strict=False)
    try:
        kept = read_history(state_dir)
    except HistoryError as exc:
        log.warning("transaction history unreadable, starting a new one", extra={"error": str(exc)})
        kept = []
    document = _Document(transactions=[*kept, entry][-MAX_ENTRIES:])
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(history_path(state_dir), msgspec.to_builtins(document), indent=2)
