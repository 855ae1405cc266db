"""Every named crash point of the transaction x 3 seeds, under a real supervisord (fault suite).

Each seed's node alternates between its two releases, so every point is crashed in an upgrade of a
different shape per seed; ``mid-rollback`` is crashed in a failing upgrade (its migrate hook fails).
Every point is crashed twice per seed: with self-update on (the upgrader replaces its own program,
so every later point is reached in the restarted process that continues the transaction) and off
(every point reached in the first process; ``after-self-update`` does not exist then).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.harness import Tally, fault_node
from zos_upgrade.upgrade.crash import CRASH_POINTS, ROLLBACK_CRASH_POINTS

POINTS = CRASH_POINTS + ROLLBACK_CRASH_POINTS
WITHOUT_SELF_UPDATE = tuple(p for p in POINTS if p != "after-self-update")


@pytest.mark.fault
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_crash_point_converges_to_one_release(tmp_path: Path, seed: int) -> None:
    tally = Tally(f"crash points (seed {seed})")
    with fault_node(tmp_path, seed) as node:
        for self_update, points in ((True, POINTS), (False, WITHOUT_SELF_UPDATE)):
            node.self_update = self_update
            for point in points:
                if tally.violations:
                    break  # the node is no longer a known starting point
                label = f"seed {seed} self-update {'on' if self_update else 'off'} crash point {point} " \
                        f"from {node.current}"
                tally.record(label, node.crash_point(point))
                tally.kills += 1
    tally.report()
    assert tally.violations == []
    assert tally.scenarios == len(POINTS) + len(WITHOUT_SELF_UPDATE)
