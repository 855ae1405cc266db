"""Run the power-loss model against the real Upgrader: one tracked upgrade, then a recovery of the
tree that every cut would leave (see ``powerloss.py`` for what the model covers and what not).

For every cut the recovered node must be exactly on one release with its manifest, boot files and
no journal or stray files (``invariants.check_state``), and on the release the durable journal calls
for: forward when it says ``committed`` or ``self-updated`` (the restarted program continues), back
for every other phase, and what the durable manifest names when there is no journal.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.fault.harness import Tally
from tests.fault.invariants import check_state, which_release
from tests.fault.memory_supervisor import MemorySupervisor
from tests.fault.powerloss import DurabilityTracker
from tests.fault.releases import NEW, OLD, ReleasePair, flist_name, release_pair
from tests.support.node import Sandbox, event_for, tree_digest
from zos_upgrade.hub.client import HubClient
from zos_upgrade.upgrade import Flister, RestartNeeded, Upgrader
from zos_upgrade.upgrade.journal import Journal
from zos_upgrade.upgrade.manifest import ManifestStore


def _upgrader(root: Path, state: Path, hub: HubClient, sup: MemorySupervisor, *,
              self_update: bool) -> Upgrader:
    return Upgrader(root, state, hub, Flister(state, hub), sup, self_update=self_update, probation=0.5,
                    start_timeout=5.0, hook_timeout=10.0, stop_timeout=1.0, sleep=sup.sleep, clock=sup.clock)


async def _upgrade(box: Sandbox, pair: ReleasePair, version: str, sup: MemorySupervisor, *,
                   self_update: bool) -> None:
    """Upgrade in this process; on RestartNeeded a new Upgrader (a new process) continues."""
    async with box.hub_client() as hub:
        event = await event_for(hub, pair.fqdn(version))
        try:
            await _upgrader(box.root, box.state, hub, sup, self_update=self_update).upgrade(None, event)
        except RestartNeeded:
            await _upgrader(box.root, box.state, hub, sup, self_update=self_update).recover()


async def _recover(hub_url: str, root: Path, state: Path, sup: MemorySupervisor) -> str | None:
    async with HubClient(hub_url, cache_dir=state / "flists") as hub:
        return await _upgrader(root, state, hub, sup, self_update=True).recover()


def expected_release(state: Path) -> str:
    """Where recovery must take a node whose durable state is ``state`` (the upgrader's rule)."""
    record = Journal(state).load()
    if record is None:
        manifest = ManifestStore(state).load("boot")
        return manifest.version if manifest is not None else "nothing"
    return record.to_version if Journal.rolls_forward(record.phase) else record.from_version


def pick_cuts(total: int, limit: int | None) -> list[int]:
    """Every cut 0..total, or ``limit`` of them spread evenly (first and last always included)."""
    if limit is None or total + 1 <= limit:
        return list(range(total + 1))
    step = total / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})


def power_loss_campaign(base: Path, seed: int, monkeypatch: pytest.MonkeyPatch, *,
                        limit: int | None = None) -> tuple[Tally, int]:
    """Returns the tally and the number of durability events of the tracked upgrade."""
    tally = Tally(f"power loss (seed {seed})")
    box = Sandbox(base / "live")
    pair = release_pair(box.root, seed, small=True)
    with box.serving_hub() as hub_url:
        for version in (OLD, NEW):
            box.pack(flist_name(version), pair.trees[version])
        digests = {}
        sup = MemorySupervisor()
        for version in (NEW, OLD):
            asyncio.run(_upgrade(box, pair, version, sup, self_update=False))
            digests[version] = tree_digest(box.root)
        tracker = DurabilityTracker([box.root, box.state])
        tracker.start()
        with tracker.tracking(monkeypatch):
            asyncio.run(_upgrade(box, pair, NEW, sup, self_update=True))
        live, problems = which_release(box.root, digests)
        assert live == NEW and not problems, problems
        cuts = set(pick_cuts(len(tracker.events), limit))
        for k, dirs, files in tracker.states():
            if k not in cuts:
                continue
            where = tracker.events[k - 1] if k else None
            label = (f"seed {seed} cut {k}/{len(tracker.events)} after "
                     f"{where.what + ' ' + Path(where.path).name if where else 'nothing'}")
            cut = base / f"cut-{k}"
            root, state = cut / "node", cut / "state"
            tracker.rebuild(dirs, files, [root, state])
            want = expected_release(state)
            try:
                asyncio.run(_recover(hub_url, root, state, MemorySupervisor(pair.services[OLD])))
            except Exception as exc:  # any failure of recovery is a finding
                tally.record(label, [f"recovery raised {type(exc).__name__}: {exc}"])
                continue
            recovered, problems = which_release(root, digests)
            if recovered is not None:
                problems += check_state(root, state, recovered, pair.fqdn(recovered))
                if recovered != want:
                    problems.append(f"recovered to {recovered}; the durable journal/manifest call for {want}")
            if k == len(tracker.events) and recovered != NEW:
                problems.append(f"with every write durable the node recovered to {recovered}, not {NEW}")
            tally.record(label, problems)
            shutil.rmtree(cut)
    return tally, len(tracker.events)
