"""Driving the supervisor for a transaction (upgrade/services.py), against the in-memory supervisor."""

from __future__ import annotations

import asyncio

import pytest

from tests.fault.memory_supervisor import MemorySupervisor
from zos_upgrade.supervisor import ServiceIsUp
from zos_upgrade.upgrade.services import _FORGET_TRIES, remove_services


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
