"""Every named crash point of the transaction x 3 seeds, under a real supervisord (fault suite).

Each seed's node alternates between its two releases, so every point is crashed in an upgrade of a
different shape per seed; ``mid-rollback`` is crashed in a failing upgrade (its migrate hook fails).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.harness import Tally, fault_node
from zos_upgrade.upgrade.crash import CRASH_POINTS, ROLLBACK_CRASH_POINTS

POINTS = CRASH_POINTS + ROLLBACK_CRASH_POINTS


@pytest.mark.fault
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_crash_point_converges_to_one_release(tmp_path: Path, seed: int) -> None:
    tally = Tally(f"crash points (seed {seed})")
    with fault_node(tmp_path, seed) as node:
        for point in POINTS:
            tally.record(f"seed {seed} crash point {point} from {node.current}", node.crash_point(point))
            tally.kills += 1
            if tally.violations:
                break  # the node is no longer a known starting point
    tally.report()
    assert tally.violations == []
    assert tally.scenarios == len(POINTS)
