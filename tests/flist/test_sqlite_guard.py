"""The guards of an flist's SQLite database: a step budget, a deadline on an injected clock, the
inflate bound of a v1 archive, and no scratch file left behind by a refusal."""

from __future__ import annotations

import contextlib
import sqlite3
import stat
import tempfile
import time
from pathlib import Path

import pytest

from tests.hostile.badflists import tar_gz
from zos_upgrade.flist import Entry, EntryKind, FlistTooCostly, Limits, open_flist, write_flist
from zos_upgrade.flist.sqlite_guard import QueryGuard
from zos_upgrade.flist.v1 import DB_MEMBER

DIR = stat.S_IFDIR | 0o755


def tree(out: Path, dirs: int = 50) -> Path:
    entries = [Entry("/", EntryKind.DIR, DIR)] + [Entry(f"/d{i}", EntryKind.DIR, DIR) for i in range(dirs)]
    write_flist(out, entries)
    return out


def test_a_query_that_never_ends_is_stopped_by_the_step_budget(tmp_path: Path) -> None:
    flist = tree(tmp_path / "t.fl")
    size = flist.stat().st_size
    with contextlib.closing(sqlite3.connect(flist)) as db:
        guard = QueryGuard(db, str(flist), size, Limits())
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError) as caught:
            db.execute("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                        "SELECT count(*) FROM r").fetchall()
        error = guard.failure(caught.value, "v2 flist")
    assert time.monotonic() - started < 5
    assert isinstance(error, FlistTooCostly)
    assert f"more than {guard.budget} SQLite steps" in str(error) and str(flist) in str(error)
    assert guard.budget == 5_000_000 + Limits().max_query_steps_per_byte * size


@pytest.mark.parametrize("suffix", [".fl", ".flist"])
def test_an_honest_walk_uses_a_small_part_of_its_budget(tmp_path: Path, suffix: str) -> None:
    with open_flist(tree(tmp_path / f"t{suffix}", dirs=2000)) as reader:
        assert sum(1 for _ in reader.entries()) == 2001
        guard = reader._guard  # type: ignore[attr-defined]
        assert 0 < guard.steps < guard.budget // 50


class JumpingClock:
    """Each reading is ``step`` seconds after the last: a slow read without waiting for one."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize("suffix", [".fl", ".flist"])
def test_the_deadline_stops_a_walk_on_the_injected_clock(tmp_path: Path, suffix: str) -> None:
    flist = tree(tmp_path / f"t{suffix}", dirs=200)
    limits = Limits(max_seconds=30.0, clock=JumpingClock(1.0))
    with open_flist(flist, limits) as reader, pytest.raises(FlistTooCostly) as caught:
        list(reader.entries())
    assert "took longer than the 30.0 s allowed" in str(caught.value)
    with open_flist(flist, Limits(max_seconds=30.0, clock=JumpingClock(0.0))) as reader:
        assert len(list(reader.entries())) == 201  # the same walk on a clock that stands still


def test_a_v1_bomb_stops_at_its_cap_and_leaves_no_scratch_files(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    bomb = tmp_path / "bomb.flist"
    tar_gz(bomb, [("./", None, ""), (f"./{DB_MEMBER}", bytes(64 * 1024 * 1024), "")])
    assert bomb.stat().st_size < 128 * 1024  # ~1000:1
    started = time.monotonic()
    with pytest.raises(FlistTooCostly) as caught:
        open_flist(bomb, Limits(max_inflated_bytes=2 * 1024 * 1024))
    assert "inflates to more than 2097152 bytes" in str(caught.value)
    assert time.monotonic() - started < 5
    assert list(scratch.iterdir()) == []
