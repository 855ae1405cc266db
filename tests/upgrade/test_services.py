"""Driving the supervisor for a transaction (upgrade/services.py), against the in-memory supervisor."""

from __future__ import annotations

import asyncio

import pytest

from tests.fault.memory_supervisor import MemorySupervisor
from zos_upgrade.supervisor import ServiceIsUp, ServiceStatus
from zos_upgrade.upgrade.errors import ProbationFailed
from zos_upgrade.upgrade.services import _FORGET_TRIES, probation, remove_services


class RestartsAfterStop(MemorySupervisor):
    """A crash-looping service: the supervisor restarts it after the first ``restarts`` stops."""

    def __init__(self, name: str, restarts: int) -> None:
        super().__init__([name])
        self.restarts = restarts
        self.stops = 0

    async def stop(self, name: str) -> None:
        await super().stop(name)
        self.stops += 1

    async def forget(self, name: str) -> None:
        if self.restarts:  # the supervisor restarted it after the stop saw it down
            self.restarts -= 1
            self.up[name] = True
        await super().forget(name)


def test_a_service_restarted_between_stop_and_forget_is_stopped_again_and_forgotten() -> None:
    sup = RestartsAfterStop("web", restarts=1)
    asyncio.run(remove_services(sup, ["web"], stop_timeout=1, sleep=sup.sleep, clock=sup.clock))
    assert "web" not in sup.up and "web" not in sup.configs
    assert sup.stops == 2


def test_a_service_that_keeps_coming_back_is_an_error_not_a_loop() -> None:
    sup = RestartsAfterStop("web", restarts=10)
    with pytest.raises(ServiceIsUp):
        asyncio.run(remove_services(sup, ["web"], stop_timeout=1, sleep=sup.sleep, clock=sup.clock))
    assert sup.stops == _FORGET_TRIES  # one stop, then one more per failed forget but the last


class NewPidEachLook(MemorySupervisor):
    """A service that is always running, under a new pid at every status: it never stays up."""

    def __init__(self, name: str) -> None:
        super().__init__([name])
        self.looks = 0

    async def status(self, name: str) -> ServiceStatus:
        self.looks += 1
        seen = await super().status(name)
        return ServiceStatus(name=seen.name, pid=self.looks, state=seen.state, family=seen.family,
                             detail=seen.detail, target=seen.target)


def test_a_zero_probation_asks_once_per_service_and_a_real_one_watches_the_pid() -> None:
    config = {"web": "exec: /bin/web\n"}
    sup = NewPidEachLook("web")
    asyncio.run(probation(sup, ["web"], config, duration=0.0, start_timeout=1, sleep=sup.sleep,
                          clock=sup.clock))
    assert sup.looks == 1  # running when first seen: nothing more to watch for no time at all
    with pytest.raises(ProbationFailed, match=r"web did not stay up .* pid 2 -> 3"):
        asyncio.run(probation(sup, ["web"], config, duration=1.0, start_timeout=1, sleep=sup.sleep,
                              clock=sup.clock))
