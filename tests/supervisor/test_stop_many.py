"""stop_many / restart_many policy against an in-memory supervisor with a controlled clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from zos_upgrade.supervisor import (
    InvalidServiceName,
    ServiceConfig,
    ServiceIsDown,
    ServiceStatus,
    StateFamily,
    StopFailed,
    UnknownService,
    restart_many,
    stop_many,
)


@dataclass
class Proc:
    up: bool = True
    stops_after: float | None = 0.0  # seconds after stop() until it is down; None: ignores stop
    dies_on_kill_round: int | None = 1  # which SIGKILL ends it; None: never (uninterruptible)
    stopped_at: float | None = None
    kills: int = 0
    target: str = "up"  # what was last asked for: zinit forgets only a service whose target is down


@dataclass
class FakeSupervisor:
    procs: dict[str, Proc]
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def _get(self, name: str) -> Proc:
        if name not in self.procs:
            raise UnknownService(f"service name {name!r} unknown")
        return self.procs[name]

    async def list(self) -> dict[str, str]:
        return {n: ("Running" if p.up else "Success") for n, p in self.procs.items()}

    async def status(self, name: str) -> ServiceStatus:
        p = self._get(name)
        if p.up and p.stopped_at is not None and p.stops_after is not None \
                and self.now >= p.stopped_at + p.stops_after:
            p.up = False
        family = StateFamily.RUNNING if p.up else StateFamily.EXITED
        return ServiceStatus(name=name, pid=42 if p.up else 0, state=str(family), family=family,
                             target=p.target)

    async def start(self, name: str) -> None:
        self.calls.append(("start", name))
        proc = self._get(name)
        proc.up, proc.target = True, "up"

    async def stop(self, name: str) -> None:
        self.calls.append(("stop", name))
        proc = self._get(name)
        proc.stopped_at, proc.target = self.now, "down"

    async def monitor(self, name: str) -> None:
        self.calls.append(("monitor", name))
        self.procs.setdefault(name, Proc(up=False))

    async def forget(self, name: str) -> None:
        self.calls.append(("forget", name))
        del self.procs[name]

    async def kill(self, name: str, signal: str) -> None:
        assert signal == "SIGKILL"
        p = self._get(name)
        if not p.up:
            raise ServiceIsDown(name)
        p.kills += 1
        if p.dies_on_kill_round is not None and p.kills >= p.dies_on_kill_round:
            p.up = False

    async def install_config(self, name: str, config: ServiceConfig) -> None: ...
    async def remove_config(self, name: str) -> None: ...
    def sweep_config_temps(self) -> Sequence[Path]: ...
    def reads_configs_from(self, directory: Path) -> bool: return False
    async def output_tail(self, name: str) -> str: return ""
    async def aclose(self) -> None: ...


def stop(sup: FakeSupervisor, names: list[str], timeout: float) -> None:
    asyncio.run(stop_many(sup, names, timeout, sleep=sup.sleep, clock=sup.clock))


def test_polite_services_stop_without_waiting_or_killing() -> None:
    sup = FakeSupervisor({"a": Proc(), "b": Proc()})
    stop(sup, ["a", "b"], 10)
    assert sup.sleeps == [] and all(p.kills == 0 for p in sup.procs.values())


def test_polls_soon_then_once_a_second_until_down() -> None:
    sup = FakeSupervisor({"slow": Proc(stops_after=3.5)})
    stop(sup, ["slow"], 10)
    ramp = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64]  # 1.27 s
    assert sup.sleeps == pytest.approx(ramp + [1.0] * 3) and sup.procs["slow"].kills == 0
    assert sup.now == pytest.approx(4.27)


def test_a_service_that_stops_at_once_costs_a_first_poll_not_an_interval() -> None:
    sup = FakeSupervisor({"quick": Proc(stops_after=0.005)})
    stop(sup, ["quick"], 30)
    assert sup.sleeps == [0.01] and sup.now == pytest.approx(0.01)


def test_sigkill_after_the_timeout_then_success() -> None:
    sup = FakeSupervisor({"stubborn": Proc(stops_after=None, dies_on_kill_round=3), "ok": Proc()})
    stop(sup, ["stubborn", "ok"], 5)
    assert sup.procs["stubborn"].kills == 3
    assert sup.now == pytest.approx(5 + 3)  # 5 s of polls, then one kill round a second


def test_gives_up_after_ten_kill_rounds_naming_survivors() -> None:
    sup = FakeSupervisor({
        "zombie": Proc(stops_after=None, dies_on_kill_round=None),
        "ghost": Proc(stops_after=None, dies_on_kill_round=None),
        "fine": Proc(),
    })
    with pytest.raises(StopFailed) as info:
        stop(sup, ["zombie", "fine", "ghost"], 2)
    assert info.value.survivors == ["ghost", "zombie"]
    assert "ghost" in str(info.value) and "zombie" in str(info.value) and "fine" not in str(info.value)
    assert sup.procs["zombie"].kills == 10 and sup.now == pytest.approx(2 + 10)


def test_unknown_services_count_as_down_and_names_are_deduplicated() -> None:
    sup = FakeSupervisor({"a": Proc()})
    stop(sup, ["a", "missing", "a"], 1)
    assert sup.calls == [("stop", "a"), ("stop", "missing")]


def test_zero_timeout_goes_straight_to_sigkill() -> None:
    sup = FakeSupervisor({"s": Proc(stops_after=None)})
    stop(sup, ["s"], 0)
    assert sup.procs["s"].kills == 1 and sup.sleeps == [1.0]


def test_bad_names_fail_before_any_call() -> None:
    sup = FakeSupervisor({"a": Proc()})
    with pytest.raises(InvalidServiceName):
        stop(sup, ["a", "b c"], 1)
    assert sup.calls == []


def test_restart_many_order() -> None:
    sup = FakeSupervisor({"old": Proc(), "done": Proc(up=False)})
    asyncio.run(restart_many(sup, ["old", "done", "new"], 5, sleep=sup.sleep, clock=sup.clock))
    assert sup.calls == [
        ("stop", "old"), ("stop", "done"),  # "done" exited with its target up: zinit needs the stop
        ("forget", "old"), ("monitor", "old"), ("start", "old"),
        ("forget", "done"), ("monitor", "done"), ("start", "done"),
        ("monitor", "new"), ("start", "new"),
    ]
    assert all(p.up for p in sup.procs.values())


def test_restart_many_does_not_stop_again_what_is_already_stopped() -> None:
    """The transaction's stop step left its services down with their target down: the restart
    asks each for its status once, sends no second stop, and still forgets, monitors and starts it."""
    sup = FakeSupervisor({"a": Proc(), "b": Proc()})
    stop(sup, ["a", "b"], 5)
    sup.calls.clear()
    asyncio.run(restart_many(sup, ["a", "b"], 5, sleep=sup.sleep, clock=sup.clock))
    assert sup.calls == [("forget", "a"), ("monitor", "a"), ("start", "a"),
                         ("forget", "b"), ("monitor", "b"), ("start", "b")]
    assert all(p.up and p.target == "up" for p in sup.procs.values())


def test_restart_many_stops_before_forgetting_and_fails_if_it_cannot() -> None:
    sup = FakeSupervisor({"stuck": Proc(stops_after=None, dies_on_kill_round=None)})
    with pytest.raises(StopFailed, match="stuck"):
        asyncio.run(restart_many(sup, ["stuck"], 1, sleep=sup.sleep, clock=sup.clock))
    assert ("forget", "stuck") not in sup.calls
