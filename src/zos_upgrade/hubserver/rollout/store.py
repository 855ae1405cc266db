"""The rollout records of a hub, kept durably under ``<root>/.rollout/<repo>/<name>.json``.

A hidden folder of the storage root: the repository listings skip dot-names, and no valid
repository or flist name can reach it. One file per release, written the durable way (temp, fsync,
rename, fsync dir). Writes are group commits: a report is answered once a write that includes it
has reached the disk, and the reports that arrived while one write ran share the next one, so
10,000 nodes reporting at once cost a few dozen writes, not 10,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool

from zos_upgrade.fsutil import atomic_write_bytes, fsync_dir
from zos_upgrade.hub.names import validate_name
from zos_upgrade.hub.rollout import Report
from zos_upgrade.hubserver.rollout.record import Halt, HaltPolicy, ReleaseRecord

__all__ = ["RolloutLimits", "RolloutStore"]

log = logging.getLogger(__name__)

FOLDER = ".rollout"


@dataclass(frozen=True)
class RolloutLimits:
    max_nodes: int = 100_000  # nodes one release's record keeps
    history_step: float = 10.0  # seconds between two points of the progress chart
    max_points: int = 2000
    max_record_bytes: int = 256 * 1024 * 1024  # a record file larger than this is not loaded
    # the pause between two writes of a release's record, for a record of 1 MiB or more (less in
    # proportion: a record of a few nodes is written at once): encoding 10,000 nodes' record (~750 KB)
    # takes ~10 ms of the event loop and its fsync ~40 ms, so a report waits up to this long and the
    # reports of that time share one write
    commit_interval: float = 0.5


class _Entry:
    def __init__(self, record: ReleaseRecord) -> None:
        self.record = record
        self.version = 0  # bumped by every change
        self.saved = 0  # the version on disk
        self.lock = asyncio.Lock()
        self.written = 0.0  # monotonic time the last write ended
        self.size = 0  # bytes of the last write


class RolloutStore:
    def __init__(self, root: Path, policy: HaltPolicy, limits: RolloutLimits | None = None,
                 clock: Callable[[], float] = time.time) -> None:  # the records' timestamps
        self.folder = root / FOLDER
        self.policy = policy
        self.limits = limits or RolloutLimits()
        self.clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}

    def _path(self, repo: str, name: str) -> Path:
        return self.folder / validate_name(repo, "repository") / (validate_name(name, "flist name") + ".json")

    def _load(self, repo: str, name: str) -> _Entry:
        key = (repo, name)
        entry = self._entries.get(key)
        if entry is None:
            record = ReleaseRecord(repo=repo, name=name)
            path = self._path(repo, name)
            try:
                record = _read(path, self.limits.max_record_bytes) or record
                record.recount()
            except (OSError, ValueError, msgspec.MsgspecError) as exc:
                # a damaged record must not stop the hub: it is kept aside and a new one started
                log.error("rollout record unreadable, kept aside, starting a new one",
                          extra={"path": str(path), "error": str(exc)})
                with contextlib.suppress(OSError):
                    os.replace(path, path.with_name(path.name + ".damaged"))
            entry = self._entries[key] = _Entry(record)
        return entry

    def get(self, repo: str, name: str) -> ReleaseRecord:
        return self._load(repo, name).record

    def releases(self, repo: str) -> list[str]:
        """The flist names of ``repo`` that have a record (on disk or in memory)."""
        names = {n for (r, n) in self._entries if r == repo}
        folder = self.folder / validate_name(repo, "repository")
        if folder.is_dir():
            names.update(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json")
                         and not p.name.startswith("."))
        return sorted(names)

    async def report(self, repo: str, name: str, report: Report) -> ReleaseRecord:
        """Record ``report``; the automatic halt is decided here. Durable when it returns."""
        entry = self._load(repo, name)
        record = entry.record
        record.apply(report, self.clock(), max_nodes=self.limits.max_nodes,
                     step=self.limits.history_step, max_points=self.limits.max_points)
        why = record.should_halt(self.policy)
        if why is not None:
            record.halt = Halt(at=self.clock(), by="auto", reason=why)
            log.warning("rollout halted automatically", extra={"release": f"{repo}/{name}", "reason": why})
        entry.version += 1
        await self._persist(repo, name, entry)
        return record

    async def set_halt(self, repo: str, name: str, halt: Halt | None) -> ReleaseRecord:
        """Halt (``halt``) or resume (None) by hand."""
        entry = self._load(repo, name)
        record = entry.record
        if halt is None and record.halt is not None:
            record.failures_at_resume = record.failures()
        record.halt = halt
        entry.version += 1
        await self._persist(repo, name, entry)
        return record

    async def set_plan(self, repo: str, name: str, plan: dict[str, Any]) -> ReleaseRecord:
        """Keep the release's rollout plan (validated by the caller); the halt rule reads its threshold."""
        entry = self._load(repo, name)
        entry.record.plan = plan
        entry.version += 1
        await self._persist(repo, name, entry)
        return entry.record

    async def _persist(self, repo: str, name: str, entry: _Entry) -> None:
        wanted = entry.version
        async with entry.lock:
            if entry.saved >= wanted:
                return  # a write that started after our change already carried it
            spacing = self.limits.commit_interval * min(1.0, entry.size / (1024 * 1024))
            pause = entry.written + spacing - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # the reports of this pause join this write
            version = entry.version
            data = msgspec.json.encode(entry.record)
            path = self._path(repo, name)
            try:
                await run_in_threadpool(_write, path, data)
            finally:
                entry.written, entry.size = time.monotonic(), len(data)
            entry.saved = version


def _read(path: Path, limit: int) -> ReleaseRecord | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size > limit:
        raise ValueError(f"{size} bytes, over the {limit} allowed")
    record = msgspec.json.decode(path.read_bytes(), type=ReleaseRecord)
    if (record.repo, record.name) != (path.parent.name, path.name[: -len(".json")]):
        raise ValueError(f"the record is of {record.repo}/{record.name}")
    return record


def _write(path: Path, data: bytes) -> None:
    for folder in (path.parent.parent, path.parent):
        if not folder.is_dir():
            folder.mkdir(exist_ok=True)
            fsync_dir(folder.parent)  # the new folder's name survives a power loss too
    atomic_write_bytes(path, data)
