"""The fast subset of the fault suite that ``make test`` runs: three named crash points, three random
kills (one during recovery too) on one seed, and the power-loss model over a sample of its cuts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fault.harness import Tally, fault_node, random_kill_campaign
from tests.fault.invariants import stray_files
from tests.fault.memory_supervisor import MemorySupervisor
from tests.fault.power_campaign import power_loss_campaign
from tests.support.node import Sandbox
from zos_upgrade.upgrade import Flister, Upgrader

SEED = 0
POINTS = ("after-backup", "mid-apply", "after-manifest")


def test_named_crash_points_and_random_kills_converge(tmp_path: Path) -> None:
    tally = Tally(f"crash smoke (seed {SEED})")
    with fault_node(tmp_path, SEED) as node:
        for point in POINTS:
            tally.record(f"seed {SEED} crash point {point}", node.crash_point(point))
        random_kill_campaign(node, tally, kills=3, recovery_every=2, max_scenarios=6)
    tally.report()
    assert tally.violations == []
    assert tally.kills >= 3 and tally.scenarios >= 3 + 1 + 3


def test_power_cuts_over_a_sample_of_steps_recover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tally, events = power_loss_campaign(tmp_path, SEED, monkeypatch, limit=20)
    tally.report()
    assert events > 40  # the tracker saw the transaction's syncs
    assert tally.scenarios == 20
    assert tally.violations == []


def test_recovery_removes_temp_files_of_writes_cut_by_a_kill(tmp_path: Path) -> None:
    """Found by the random-kill campaign (seed 0, a kill 4.1 s into an upgrade and 1.2 s into its
    recovery): a journal write cut by SIGKILL left ``.journal.json.zu-tmp-*`` for good."""
    box = Sandbox(tmp_path)
    planted = [
        box.state / ".journal.json.zu-tmp-11784-ab1488cc",
        box.state / ".last-transaction.json.zu-tmp-1-aa",
        box.state / "manifests" / ".boot.json.zu-tmp-1-bb",
        box.root / "tmp" / ".flist.info.zu-tmp-1-cc",
        box.state / "cache" / "blocks" / "ab" / ".ab12.zu-tmp-1-dd",
        box.state / "flists" / ".zos.fl.zu-tmp-1-ee",
    ]
    kept = box.root / "tmp" / "flist.name"
    for path in [*planted, kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    upgrader = Upgrader(box.root, box.state, Flister(box.state), MemorySupervisor())
    assert asyncio.run(upgrader.recover()) is None
    assert stray_files(box.root, box.state) == []
    assert kept.read_text() == "half"

