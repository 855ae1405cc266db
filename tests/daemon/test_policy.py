"""Each policy alone: what it checks, which transactions it asks for, what it confirms.

The daemon around a policy is a small in-memory ``DaemonContext`` that records the transactions it
is asked to run and answers them with a chosen result; the upgrader records what it was handed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from zos_upgrade.daemon.outcome import CheckOutcome, Result
from zos_upgrade.daemon.policy import BinsPolicy, BootPolicy, CheckFailed, ReleasePolicy, Transaction
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.versions import ZERO, Version


def V(text: str) -> Version:
    return Version.parse(text)


@dataclass(frozen=True)
class Flist:
    name: str
    ver: str = "1.0.0"

    def fqdn(self) -> str:
        return self.name

    def version(self) -> Version:
        return V(self.ver)


@dataclass(frozen=True)
class Repo:
    to_add: list[Flist]
    to_del: list[Flist]
    all: dict[str, Flist]


@dataclass(frozen=True)
class Release:
    version: Version


@dataclass
class Upgrader:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def install_from(self, source: Any, candidate: Any, target: str) -> str:
        self.calls.append(("install", source, candidate, target))
        return "report"

    async def uninstall_binary(self, fqdn: str) -> str:
        self.calls.append(("uninstall", fqdn))
        return "report"


@dataclass
class Watcher:
    start: Any
    jump: bool = False
    events: list[Any] = field(default_factory=list)
    confirmed: list[Any] = field(default_factory=list)
    error: Exception | None = None

    async def check(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.events.pop(0) if self.events else None

    def confirm(self, value: Any) -> None:
        self.confirmed.append(value)


@dataclass
class Context:
    """The daemon as a policy sees it: it runs each transaction it is handed, then answers ``result``."""

    version: Version = ZERO
    event: Flist | None = None
    bins: dict[str, Flist] = field(default_factory=dict)
    result: Result = "upgraded"
    stop_after: int | None = None
    ran: list[tuple[str, str | None, object]] = field(default_factory=list)

    @property
    def stopping(self) -> bool:
        return self.stop_after is not None and len(self.ran) >= self.stop_after

    def now(self) -> float:
        return 42.0

    def current_version(self) -> Version:
        return self.version

    def current_event(self) -> Flist | None:
        return self.event

    def current_bins(self) -> Mapping[str, Flist]:
        return self.bins

    async def transaction(self, what: str, call: Transaction, *, to_version: str | None,
                          release: str | None = None) -> CheckOutcome:
        self.ran.append((what, to_version, await call()))
        detail = "" if self.result == "upgraded" else what
        return CheckOutcome(self.now(), self.result, str(self.version), detail)


SOURCE: Any = object()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_boot_policy_installs_a_new_node_and_upgrades_a_running_one_then_confirms() -> None:
    made: list[Watcher] = []

    def factory(current: Version) -> Watcher:
        made.append(Watcher(current))
        return made[-1]

    upgrader = Upgrader()
    policy = BootPolicy(upgrader, SOURCE, factory)
    fresh = Context()
    policy.start(fresh)
    assert made[0].start == ZERO
    made[0].events.append(Flist("tf/zos:latest.fl", "1.0.0"))
    outcome = _run(policy.step(fresh))
    assert outcome.result == "upgraded" and outcome.reports == []  # the context's own outcome
    assert fresh.ran[0][:2] == ("boot install tf/zos:latest.fl 1.0.0", "1.0.0")
    assert upgrader.calls == [("install", SOURCE, Flist("tf/zos:latest.fl", "1.0.0"), "boot")]
    assert made[0].confirmed == [V("1.0.0")]

    running = Context(version=V("1.0.0"), event=Flist("tf/zos:latest.fl", "1.0.0"))
    policy.start(running)
    made[1].events.append(Flist("tf/zos:latest.fl", "1.1.0"))
    _run(policy.step(running))
    assert running.ran[0][0] == "boot upgrade tf/zos:latest.fl 1.1.0"


def test_a_failed_transaction_is_not_confirmed() -> None:
    watcher = Watcher(ZERO, events=[Flist("tf/zos:latest.fl", "2.0.0")])
    policy = BootPolicy(Upgrader(), SOURCE, lambda current: watcher)
    node = Context(result="rolled-back")
    policy.start(node)
    assert _run(policy.step(node)).failed
    assert watcher.confirmed == []


def test_nothing_new_is_no_step_and_a_failing_check_is_check_failed_with_its_cause() -> None:
    watcher = Watcher(ZERO)
    policy = BootPolicy(Upgrader(), SOURCE, lambda current: watcher)
    node = Context()
    policy.start(node)
    assert _run(policy.step(node)) is None and node.ran == []
    cause = ZosUpgradeError("http://hub/api/flist/tf/zos:latest.fl/light: connection refused")
    watcher.error = cause
    with pytest.raises(CheckFailed) as failed:
        _run(policy.step(node))
    assert failed.value.cause is cause and failed.value.policy == "boot"
    assert str(failed.value) == f"boot check: ZosUpgradeError: {cause}"


def test_a_policy_refuses_to_check_before_start() -> None:
    policy = BootPolicy(Upgrader(), SOURCE, lambda current: Watcher(current))
    with pytest.raises(RuntimeError, match="before start"):
        _run(policy.check())


def test_bins_policy_installs_then_uninstalls_and_confirms_what_the_repository_holds() -> None:
    old, new = Flist("bins/old.fl"), Flist("bins/new.fl")
    watcher = Watcher(None)
    upgrader = Upgrader()
    policy = BinsPolicy(upgrader, SOURCE, lambda current: watcher)
    node = Context(bins={old.name: old})
    policy.start(node)
    everything = {new.name: new}
    watcher.events.append(Repo([new], [old], everything))
    outcome = _run(policy.step(node))
    assert [r[0] for r in node.ran] == ["install bins/new.fl", "uninstall bins/old.fl"]
    assert [r[1] for r in node.ran] == [None, None]  # a package is not the node's release
    assert upgrader.calls == [("install", SOURCE, new, "bin"), ("uninstall", "bins/old.fl")]
    assert outcome.result == "upgraded" and outcome.at == 42.0
    assert watcher.confirmed == [everything]


def test_bins_policy_stops_between_packages_when_the_daemon_stops() -> None:
    a, b = Flist("bins/a.fl"), Flist("bins/b.fl")
    watcher = Watcher(None, events=[Repo([a, b], [], {a.name: a, b.name: b})])
    policy = BinsPolicy(Upgrader(), SOURCE, lambda current: watcher)
    node = Context(stop_after=1)
    policy.start(node)
    _run(policy.step(node))
    assert [r[0] for r in node.ran] == ["install bins/a.fl"]


def test_release_policy_jumps_to_latest_on_a_fresh_node_then_follows_at_the_configured_pace() -> None:
    made: list[Watcher] = []

    def factory(current: Version, jump: bool) -> Watcher:
        made.append(Watcher(current, jump))
        return made[-1]

    policy = ReleasePolicy(Upgrader(), SOURCE, factory, jump_to_latest=False)
    assert policy.repeats
    node = Context()
    policy.start(node)
    assert (made[0].start, made[0].jump) == (ZERO, True)
    made[0].events.append(Release(V("2.0.0")))
    node.version = V("2.0.0")  # what the transaction left on the node
    _run(policy.step(node))
    assert node.ran[0][:2] == ("release 2.0.0", "2.0.0")
    assert made[0].confirmed == [V("2.0.0")]
    assert [(w.start, w.jump) for w in made] == [(ZERO, True), (V("2.0.0"), False)]
    policy.start(Context(version=V("2.0.0")))  # a later start on an installed node: no jump
    assert (made[2].start, made[2].jump) == (V("2.0.0"), False)
