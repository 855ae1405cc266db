"""SIGKILL upgrades at seeded random moments, and recoveries too, under a real supervisord (fault
suite): 3 seeds x 68 killed upgrades (>= 200 in all), every third one with its recovery killed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.harness import Tally, fault_node, random_kill_campaign

KILLS_PER_SEED = 68


@pytest.mark.fault
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_kills_always_converge_to_one_release(tmp_path: Path, seed: int) -> None:
    tally = Tally(f"random kills (seed {seed})")
    with fault_node(tmp_path, seed) as node:
        random_kill_campaign(node, tally, kills=KILLS_PER_SEED, recovery_every=3, max_scenarios=120)
    tally.report()
    assert tally.violations == []
    assert tally.kills >= KILLS_PER_SEED
