"""The node's queue of fleet reports not yet delivered: ``<state>/reports/<seq>.json``, one per report.

A report is written here (durably) when a transaction ends and removed once the hub took it, so a
hub that is down, or a daemon that restarts, loses none. Bounded: past ``limit`` files the oldest
are dropped (the hub keeps each node's latest result only, so the newest reports matter most).
A file that cannot be read is removed with a log line: a bad report must never block the queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from zos_upgrade.fsutil import atomic_write_bytes, fsync_dir, read_at_most
from zos_upgrade.hub.rollout import MAX_REPORT_BYTES, Report

__all__ = ["QueuedReport", "ReportQueue"]

log = logging.getLogger(__name__)

FOLDER = "reports"
DEFAULT_LIMIT = 64


class _Stored(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    release: str  # repo/name on the hub
    report: Report


@dataclass(frozen=True)
class QueuedReport:
    path: Path
    release: str
    report: Report


class ReportQueue:
    def __init__(self, state_dir: Path, limit: int = DEFAULT_LIMIT) -> None:
        self.folder = state_dir / FOLDER
        self.limit = limit

    def _names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.folder) if n.endswith(".json") and n[:-5].isdigit())
        except FileNotFoundError:
            return []

    def put(self, release: str, report: Report) -> Path:
        """Queue ``report`` durably; drops the oldest past the limit. OSError passes through."""
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.folder.parent)
        names = self._names()
        seq = int(names[-1][:-5]) + 1 if names else 1
        path = self.folder / f"{seq:012d}.json"
        atomic_write_bytes(path, msgspec.json.encode(_Stored(release, report)))
        excess = len(names) + 1 - self.limit
        for name in names[:max(excess, 0)]:
            log.warning("report queue full, the oldest report dropped", extra={"file": name})
            self._remove(self.folder / name)
        return path

    def pending(self) -> list[QueuedReport]:
        """The queued reports, oldest first (unreadable files removed)."""
        out: list[QueuedReport] = []
        for name in self._names():
            path = self.folder / name
            try:
                data = read_at_most(path, 2 * MAX_REPORT_BYTES)
                if data is None:
                    continue
                stored = msgspec.json.decode(data, type=_Stored)
            except (OSError, msgspec.DecodeError) as exc:
                log.error("queued report unreadable, removed", extra={"file": str(path), "error": str(exc)})
                self._remove(path)
                continue
            out.append(QueuedReport(path, stored.release, stored.report))
        return out

    def done(self, item: QueuedReport) -> None:
        self._remove(item.path)

    def _remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)
