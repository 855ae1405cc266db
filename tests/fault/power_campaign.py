"""Run the power-loss model against the real Upgrader: one tracked upgrade, then a recovery of the
tree that every cut would leave (see ``powerloss.py`` for what the model covers and what not).

For every cut the recovered node must be exactly on one release with its manifest, boot files and
no journal or stray files (``invariants.check_state``), and on the release the durable journal calls
for: forward when it says ``committed`` or ``self-updated`` (the restarted program continues), back
for every other phase, and what the durable manifest names when there is no journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import pytest

from tests.fault.harness import Tally
from tests.fault.invariants import check_state, which_release
from tests.fault.memory_supervisor import MemorySupervisor
from tests.fault.powerloss import DurabilityTracker
from tests.fault.releases import NEW, OLD, ReleasePair, flist_name, release_pair
from tests.support.node import Sandbox, install_hub_flist, tree_digest
from zos_upgrade.upgrade import Flister, RestartNeeded, Upgrader
from zos_upgrade.upgrade.journal import Journal
from zos_upgrade.upgrade.manifest import ManifestStore


def _upgrader(root: Path, state: Path, sup: MemorySupervisor, *, self_update: bool) -> Upgrader:
    return Upgrader(root, state, Flister(state), sup, self_update=self_update, probation=0.5,
                    start_timeout=5.0, hook_timeout=10.0, stop_timeout=1.0, sleep=sup.sleep, clock=sup.clock)


async def _upgrade(box: Sandbox, pair: ReleasePair, version: str, sup: MemorySupervisor, *,
                   self_update: bool) -> None:
    """Upgrade in this process; on RestartNeeded a new Upgrader (a new process) continues."""
    async with box.hub_client() as hub:
        try:
            upgrader = _upgrader(box.root, box.state, sup, self_update=self_update)
            await install_hub_flist(upgrader, hub, pair.fqdn(version))
        except RestartNeeded:
            await _upgrader(box.root, box.state, sup, self_update=self_update).recover()


async def _recover(root: Path, state: Path, sup: MemorySupervisor) -> str | None:
    return await _upgrader(root, state, sup, self_update=True).recover()


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


def _recover_and_check(root: Path, state: Path, pair: ReleasePair,
                       digests: dict[str, dict[str, str]]) -> tuple[str | None, list[str]]:
    """Recover the node at ``root``/``state`` as a fresh process would; check every file invariant
    and that it went where its durable journal/manifest said."""
    want = expected_release(state)
    try:
        asyncio.run(_recover(root, state, MemorySupervisor(pair.services[OLD])))
    except Exception as exc:  # any failure of recovery is a finding
        return None, [f"recovery raised {type(exc).__name__}: {exc}"]
    recovered, problems = which_release(root, digests)
    if recovered is not None:
        problems += check_state(root, state, recovered, pair.fqdn(recovered))
        if recovered != want:
            problems.append(f"recovered to {recovered}; the durable journal/manifest call for {want}")
    return recovered, problems


def _label(seed: int, tracker: DurabilityTracker, k: int) -> str:
    where = tracker.events[k - 1] if k else None
    return (f"seed {seed} cut {k}/{len(tracker.events)} after "
            f"{where.what + ' ' + Path(where.path).name if where else 'nothing'}")


def power_loss_campaign(base: Path, seed: int, monkeypatch: pytest.MonkeyPatch, *,
                        limit: int | None = None, nested: int = 0) -> tuple[Tally, int]:
    """Cut the upgrade after each durability event (or ``limit`` of them) and recover each cut.

    With ``nested``, that many cuts (spread over those that leave a journal, i.e. where recovery
    has work to do) have their RECOVERY tracked and cut after each of its own events too, and each
    of those trees is recovered again: a power cut during recovery.
    Returns the tally and the number of durability events of the tracked upgrade.
    """
    tally = Tally(f"power loss (seed {seed})", unit="power cuts")
    box = Sandbox(base / "live")
    pair = release_pair(box.root, seed, small=True)
    with box.serving_hub():
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
        cuts = pick_cuts(len(tracker.events), limit)
        with_journal = [k for k in cuts if _journal_event_before(tracker, k)]
        deep = {with_journal[i] for i in pick_cuts(len(with_journal) - 1, nested)} if nested else set()
        for k, dirs, files in tracker.states():
            if k not in cuts:
                continue
            label = _label(seed, tracker, k)
            tally.kills += 1
            cut = base / f"cut-{k}"
            root, state = cut / "node", cut / "state"
            tracker.rebuild(dirs, files, [root, state])
            if k in deep:
                _cut_the_recovery(tally, label, cut, pair, digests, monkeypatch)
            recovered, problems = _recover_and_check(root, state, pair, digests)
            if k == len(tracker.events) and recovered != NEW:
                problems.append(f"with every write durable the node recovered to {recovered}, not {NEW}")
            tally.record(label, problems)
            shutil.rmtree(cut)
    return tally, len(tracker.events)


def _journal_event_before(tracker: DurabilityTracker, k: int) -> bool:
    """True when some event among the first ``k`` synced the journal (a cut there may leave one)."""
    return any("journal.json" in event.path for event in tracker.events[:k])


def _cut_the_recovery(tally: Tally, label: str, cut: Path, pair: ReleasePair,
                      digests: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Recover a copy of ``cut`` under a tracker, then cut that recovery after each of its events
    and recover each of those trees again."""
    first = cut.with_name(cut.name + "-r")
    shutil.copytree(cut, first, symlinks=True)
    tracker = DurabilityTracker([first / "node", first / "state"])
    tracker.start()
    # the tracked recovery's own outcome is checked on the uncut copy, so its errors are not ours here
    with tracker.tracking(monkeypatch), contextlib.suppress(Exception):
        asyncio.run(_recover(first / "node", first / "state", MemorySupervisor(pair.services[OLD])))
    for j, dirs, files in tracker.states():
        again = cut.with_name(f"{cut.name}-r{j}")
        tracker.rebuild(dirs, files, [again / "node", again / "state"])
        _, problems = _recover_and_check(again / "node", again / "state", pair, digests)
        tally.record(f"{label}, recovery cut {j}/{len(tracker.events)}", problems)
        tally.recovery_kills += 1
        shutil.rmtree(again)
    shutil.rmtree(first)
