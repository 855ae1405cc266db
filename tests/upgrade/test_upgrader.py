"""The Upgrader itself, fast and without network: local flists in a dir:// store, an in-memory supervisor.

Every case ends with the node exactly on the old release or exactly on the new one: the node root
compared byte for byte (modes and contents of every entry, boot files included), the services the
supervisor runs, the manifests, and no journal or backup left. A "crash" is a BaseException raised
at a named crash point: nothing catches it, so the process state is what a SIGKILL would leave on
disk (the e2e and fault suites kill real processes; these run in milliseconds).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import zos_upgrade.upgrade.outcome as outcome
import zos_upgrade.upgrade.steps as steps
from tests.fault.memory_supervisor import MemorySupervisor
from tests.support.local_releases import packed, verified_release
from tests.support.node import Exe, TreeSpec, tree_digest
from zos_upgrade.sources import ReleaseRejected, Target, VerifiedRelease
from zos_upgrade.supervisor import ServiceStatus, StateFamily
from zos_upgrade.upgrade import (
    CRASH_POINTS,
    Flister,
    ReleaseRefused,
    RestartNeeded,
    RollbackIncomplete,
    RolledBack,
    Upgrader,
)
from zos_upgrade.upgrade.journal import Journal, Phase

OLD, NEW = "1.0.0", "1.1.0"
PROGRAM = "bin/zos-upgrade"


def service(name: str) -> str:
    return f"exec: /usr/bin/{name}\n"


def release_tree(version: str) -> TreeSpec:
    """Two services; files added, replaced, removed and kept; hooks; node data the hooks change."""
    hook = Exe(f"#!/bin/sh\necho {version} >> \"$ZOS_ROOT/var/lib/app/hooks.log\"\n")
    tree: dict[str, str | bytes | Exe] = {
        "etc/zinit/alpha.yaml": service("alpha"),
        "etc/zinit/beta.yaml": service("beta") if version == OLD else service("beta") + "log: stdout\n",
        "etc/app.conf": f"version={version}\n",                  # replaced
        f"opt/app/only-{version}.txt": version,                  # added by one, removed by the other
        "usr/share/kept.txt": "same in both\n",                  # unchanged
        PROGRAM: Exe(f"#!/bin/sh\necho {version}\n"),            # the upgrader's own program
        "hooks.paths": "/var/lib/app\n",
    }
    if version == NEW:
        tree["etc/zinit/gamma.yaml"] = service("gamma")         # a service the new release adds
        for name in ("pre-copy", "post-copy", "migrate", "post-start"):
            tree[name] = hook
    return tree


class Supervisor(MemorySupervisor):
    """The in-memory supervisor, plus services that die right after they start (``crashing``) and a
    switch that makes every call fail (``down``, a supervisor that went away)."""

    def __init__(self) -> None:
        super().__init__()
        self.crashing: set[str] = set()
        self.down = False

    def _known(self, name: str) -> bool:
        if self.down:
            raise OSError(f"supervisor socket gone (asked about {name})")
        return super()._known(name)

    async def status(self, name: str) -> ServiceStatus:
        if name in self.crashing and self._known(name):
            return ServiceStatus(name=name, pid=0, state="Error", family=StateFamily.EXITED)
        return await super().status(name)


@dataclasses.dataclass
class Node:
    base: Path
    sup: Supervisor
    releases: dict[str, VerifiedRelease]
    digests: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.base / "node"

    @property
    def state(self) -> Path:
        return self.base / "state"

    def upgrader(self, **options: object) -> Upgrader:
        settings: dict[str, object] = {"self_update": False, "probation": 1.0, "start_timeout": 5.0,
                                       "hook_timeout": 10.0, "stop_timeout": 1.0, "sleep": self.sup.sleep,
                                       "clock": self.sup.clock}
        settings.update(options)
        return Upgrader(self.root, self.state, Flister(self.state), self.sup, **settings)  # type: ignore[arg-type]

    def install(self, version: str, **options: object) -> object:
        return asyncio.run(self.upgrader(**options).install(self.releases[version]))

    def recover(self, **options: object) -> str | None:
        return asyncio.run(self.upgrader(**options).recover())

    def assert_on(self, version: str) -> None:
        """Exactly on ``version``: every byte of the node, its services, its records; nothing left over."""
        assert tree_digest(self.root, exclude=()) == self.digests[version]
        services = {"alpha", "beta"} | ({"gamma"} if version == NEW else set())
        assert {n for n, up in self.sup.up.items() if up} == services
        manifest = self.upgrader().installed_boot()
        assert manifest is not None and manifest.version == version
        assert Journal(self.state).load() is None
        backup = self.state / "backup"
        assert not backup.exists() or not any(backup.rglob("*"))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A node on OLD; NEW ready to install. The digests of both are measured once, by installing."""
    blocks = tmp_path / "blocks"
    downloads = tmp_path / "state" / "flists"
    releases = {}
    for version in (OLD, NEW):
        flist, _ = packed(tmp_path / "packing", f"zos:{version}.fl", release_tree(version), blocks)
        releases[version] = verified_release(flist, downloads, version=version,
                                             fqdn=f"tf-zos/zos:{version}.fl", block_store=f"dir://{blocks}")
    box = Node(tmp_path, Supervisor(), releases)
    (box.root / "var/lib/app").mkdir(parents=True)
    (box.root / "var/lib/app/db").write_text("the node's own data\n")
    box.install(OLD)  # a first install (OLD has no hooks)
    box.digests[OLD] = tree_digest(box.root, exclude=())
    box.install(NEW)  # what upgrading OLD -> NEW leaves, its hooks' log included
    box.digests[NEW] = tree_digest(box.root, exclude=())
    # back to OLD (a release may be older: a normal upgrade); the log is node data, not OLD's
    box.install(OLD)
    (box.root / "var/lib/app/hooks.log").unlink()
    box.assert_on(OLD)
    yield box


def test_an_upgrade_commits_the_new_release(node: Node) -> None:
    report = node.install(NEW)
    node.assert_on(NEW)
    assert (node.root / "etc/app.conf").read_text() == f"version={NEW}\n"
    assert not (node.root / f"opt/app/only-{OLD}.txt").exists()
    assert (node.root / "var/lib/app/hooks.log").read_text() == f"{NEW}\n" * 4
    assert json.loads((node.root / "tmp/flist.info").read_text())["name"] == f"zos:{NEW}.fl"
    assert json.loads((node.state / "last-transaction.json").read_text())["result"] == "committed"
    assert report.from_version == OLD and report.to_version == NEW  # type: ignore[attr-defined]


# ------------------------------------------------------------------ a failure at each step


class Injected(Exception):
    pass


def fail_after(step_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step does all its work, then fails: the worst moment to fail, everything to undo."""
    def failing(step: steps.Step) -> steps.Step:
        async def run(ctx: steps.Context, tx: steps.Transaction) -> None:
            await step.run(ctx, tx)
            raise Injected(f"injected after {step.name}")

        return dataclasses.replace(step, run=run)

    table = tuple(failing(s) if s.name == step_name else s for s in steps.STEPS)
    assert table != steps.STEPS, f"no step {step_name}"
    monkeypatch.setattr(steps, "STEPS", table)


# the "rollback" row runs only in a rollback transaction (tests/e2e/test_rollback.py fails it)
ROLLED_BACK_STEPS = [s.name for s in steps.STEPS
                     if s.on_failure is steps.OnFailure.ROLL_BACK and s.name != "rollback"]


class RecordingGate:
    """A disrupt gate (the daemon's FleetLock gate) that only records what the upgrader asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def take(self) -> None:
        self.calls.append("take")

    async def release(self) -> None:
        self.calls.append("release")


@pytest.mark.parametrize("step", ROLLED_BACK_STEPS)
def test_a_failure_at_each_step_leaves_the_node_exactly_on_the_old_release(
    node: Node, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    fail_after(step, monkeypatch)
    gate = RecordingGate()  # with a gate, so that the lock step runs too
    with pytest.raises(RolledBack) as failed:
        node.install(NEW, self_update=step in ("self", "program-start"), disrupt=gate)
    assert failed.value.step == step and "injected after" in failed.value.reason
    assert failed.value.report is not None and step in failed.value.report.phases
    node.assert_on(OLD)
    result = json.loads((node.state / "last-transaction.json").read_text())
    assert result["result"] == "rolled-back" and result["step"] == step
    names = [s.name for s in steps.STEPS]
    # the slot is taken before the first service stops and given back once rolled back
    assert gate.calls == (["take", "release"] if names.index(step) >= names.index("lock") else [])


def test_the_gate_is_asked_before_services_stop_and_told_after_the_commit(node: Node) -> None:
    gate = RecordingGate()
    seen_up: list[bool] = []

    async def take() -> None:
        seen_up.append(all(node.sup.up.values()))  # nothing stopped yet
        gate.calls.append("take")

    gate.take = take  # type: ignore[method-assign]
    node.install(NEW, disrupt=gate)
    assert gate.calls == ["take", "release"] and seen_up == [True]
    node.assert_on(NEW)


def test_a_failed_probation_rolls_back(node: Node) -> None:
    node.sup.crashing.add("gamma")
    with pytest.raises(RolledBack) as failed:
        node.install(NEW)
    assert failed.value.step == "probation" and "gamma" in failed.value.reason
    node.sup.crashing.clear()
    node.assert_on(OLD)


def test_a_failed_rollback_is_kept_and_finished_at_the_next_start(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    node.sup.crashing.add("gamma")
    real_undo = outcome.undo

    async def supervisor_gone(ctx: steps.Context) -> None:
        node.sup.down = True
        await real_undo(ctx)

    monkeypatch.setattr(outcome, "undo", supervisor_gone)
    with pytest.raises(RollbackIncomplete) as failed:
        node.install(NEW)
    assert failed.value.step == "probation" and "rollback failed" in failed.value.reason
    record = Journal(node.state).load()
    assert record is not None and record.phase is Phase.ROLLING_BACK
    monkeypatch.setattr(outcome, "undo", real_undo)
    node.sup.down = False
    node.sup.crashing.clear()
    recovered = node.recover()
    assert recovered is not None and recovered.startswith(f"rolled back to {OLD}: ProbationFailed")
    node.assert_on(OLD)


# ------------------------------------------------------------------ refused: nothing touched


class Rejecting:
    async def verify(self, candidate: str, target: Target) -> VerifiedRelease:
        raise ReleaseRejected(f"{candidate}: the signature does not verify")


def assert_untouched(node: Node, before: dict[str, str], manifests: dict[str, str]) -> None:
    node.assert_on(OLD)
    assert tree_digest(node.root, exclude=()) == before
    assert {p.name: p.read_text() for p in (node.state / "manifests").glob("*.json")} == manifests
    assert json.loads((node.state / "last-transaction.json").read_text())["result"] == "refused"


@pytest.mark.parametrize("how", ["rejected by its source", "unfetchable", "unplannable"])
def test_a_refused_release_touches_nothing(node: Node, tmp_path: Path, how: str) -> None:
    before = tree_digest(node.root, exclude=())
    manifests = {p.name: p.read_text() for p in (node.state / "manifests").glob("*.json")}
    upgrader = node.upgrader()
    with pytest.raises(ReleaseRefused) as refused:
        if how == "rejected by its source":
            asyncio.run(upgrader.install_from(Rejecting(), "zos 6.6.6", "boot"))
        elif how == "unfetchable":
            gone = dataclasses.replace(node.releases[NEW], flist=tmp_path / "gone.fl", md5="0" * 32)
            asyncio.run(upgrader.install(gone))
        else:
            flist, _ = packed(tmp_path / "bad", "zos:6.6.6.fl", {"opt/no-services": "x"}, tmp_path / "blocks")
            bad = verified_release(flist, node.state / "flists", version="6.6.6",
                                   block_store=f"dir://{tmp_path}/blocks")
            asyncio.run(upgrader.install(bad))
    assert refused.value.step == ("plan" if how == "unplannable" else "fetch")
    assert_untouched(node, before, manifests)


# ------------------------------------------------------------------ crashes and recovery


class PowerCut(BaseException):
    """Not an Exception: nothing in the upgrader catches it, as nothing survives a SIGKILL."""


def crash_at(point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(name: str) -> None:
        if name == point:
            raise PowerCut(name)

    monkeypatch.setattr(steps, "crash_point", crash)
    monkeypatch.setattr(outcome, "crash_point", crash)


# the journal phase each crash point leaves; recovery goes forward only from the last two
PHASE_AT = {
    "after-fetch": None, "after-plan": Phase.PLANNED, "after-self-update": Phase.SELF_UPDATED,
    "after-pre-copy": Phase.PRE_COPIED, "after-stop": Phase.STOPPED, "after-backup": Phase.BACKED_UP,
    "mid-apply": Phase.APPLYING, "after-apply": Phase.APPLIED, "after-migrate": Phase.MIGRATED,
    "after-restart": Phase.RESTARTED, "after-probation": Phase.PROBATION_PASSED,
    "after-manifest": Phase.COMMITTED, "after-boot-files": Phase.COMMITTED,
}
FORWARD = {"after-self-update", "after-manifest", "after-boot-files"}


def test_the_table_covers_every_crash_point() -> None:
    assert list(PHASE_AT) == list(CRASH_POINTS)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_recovery_from_each_journal_phase_lands_on_exactly_one_release(
    node: Node, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    self_update = point == "after-self-update"
    crash_at(point, monkeypatch)
    with pytest.raises(PowerCut):
        node.install(NEW, self_update=self_update)
    record = Journal(node.state).load()
    assert (record.phase if record else None) is PHASE_AT[point]
    monkeypatch.undo()  # the next process runs normally
    outcome_text = node.recover(self_update=self_update)
    node.assert_on(NEW if point in FORWARD else OLD)
    assert (outcome_text is None) == (record is None)


def test_the_commit_point_decides_back_or_forward(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    # the last crash point before the durable "committed" record, and the first after it
    crash_at("after-probation", monkeypatch)
    with pytest.raises(PowerCut):
        node.install(NEW)
    monkeypatch.undo()
    stopped = "the upgrader stopped in phase 'probation-passed' (crash or kill)"
    assert node.recover() == f"rolled back to {OLD}: {stopped}"
    node.assert_on(OLD)
    crash_at("after-manifest", monkeypatch)
    with pytest.raises(PowerCut):
        node.install(NEW)
    monkeypatch.undo()
    assert node.recover() == f"rolled forward: committed {NEW}"
    node.assert_on(NEW)


def test_a_crash_while_rolling_back_is_undone_again(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_after("restart", monkeypatch)
    crash_at("mid-rollback", monkeypatch)
    with pytest.raises(PowerCut):
        node.install(NEW)
    record = Journal(node.state).load()
    assert record is not None and record.phase is Phase.ROLLING_BACK
    monkeypatch.undo()
    assert node.recover() == f"rolled back to {OLD}: Injected: injected after restart"
    node.assert_on(OLD)


# ------------------------------------------------------------------ self-update


def test_self_update_restarts_then_the_next_process_continues_without_the_source(node: Node) -> None:
    with pytest.raises(RestartNeeded):
        node.install(NEW, self_update=True)
    record = Journal(node.state).load()
    assert record is not None and record.phase is Phase.SELF_UPDATED
    assert (node.root / PROGRAM).read_text() == f"#!/bin/sh\necho {NEW}\n"
    assert (node.root / "etc/app.conf").read_text() == f"version={OLD}\n"  # nothing else moved yet
    # no block store any more: the kept flist file and its mount are all the next process needs
    for block in (node.base / "blocks").rglob("*"):
        if block.is_file():
            block.unlink()
    assert node.recover(self_update=True) == f"continued after self-update: committed {NEW}"
    node.assert_on(NEW)


def test_a_kept_flist_file_that_changed_is_not_trusted_after_self_update(node: Node) -> None:
    with pytest.raises(RestartNeeded):
        node.install(NEW, self_update=True)
    node.releases[NEW].flist.write_bytes(b"not the flist that was planned")
    outcome_text = node.recover(self_update=True)
    assert outcome_text is not None and "changed since the plan" in outcome_text
    node.assert_on(OLD)
