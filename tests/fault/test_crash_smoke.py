"""The fast subset of the fault suite that ``make test`` runs: three named crash points, three random
kills (one during recovery too) on one seed, and the power-loss model over a sample of its cuts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.harness import Tally, fault_node, random_kill_campaign
from tests.fault.power_campaign import power_loss_campaign

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
