"""An in-memory supervisor for the power-loss model, where services are not part of what is checked.

It keeps the protocol's contracts that the upgrader relies on (unknown names raise UnknownService,
``forget`` refuses a running service, ``monitor`` refuses a monitored one) and a controlled clock,
so probation passes at once instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from zos_upgrade.supervisor import (
    AlreadyMonitored,
    ServiceConfig,
    ServiceIsDown,
    ServiceIsUp,
    ServiceStatus,
    StateFamily,
    UnknownService,
)


class MemorySupervisor:
    def __init__(self, running: Iterable[str] = ()) -> None:
        self.up: dict[str, bool] = dict.fromkeys(running, True)
        self.configs: set[str] = set(self.up)
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    def _known(self, name: str) -> bool:
        if name not in self.up:
            raise UnknownService(f"service name {name!r} unknown")
        return self.up[name]

    async def list(self) -> dict[str, str]:
        return {n: "Running" if up else "Success" for n, up in self.up.items()}

    async def status(self, name: str) -> ServiceStatus:
        up = self._known(name)
        family = StateFamily.RUNNING if up else StateFamily.EXITED
        return ServiceStatus(name=name, pid=100 if up else 0, state=str(family), family=family,
                             target="up" if up else "down")

    async def start(self, name: str) -> None:
        self._known(name)
        self.up[name] = True

    async def stop(self, name: str) -> None:
        self._known(name)
        self.up[name] = False

    async def monitor(self, name: str) -> None:
        if name in self.up:
            raise AlreadyMonitored(f"service {name!r} already monitored")
        if name not in self.configs:
            raise UnknownService(f"service name {name!r} has no config")
        self.up[name] = True

    async def forget(self, name: str) -> None:
        if self._known(name):
            raise ServiceIsUp(f"service {name!r} is up")
        del self.up[name]

    async def kill(self, name: str, signal: str) -> None:
        if not self._known(name):
            raise ServiceIsDown(f"service {name!r} is down")
        self.up[name] = False

    async def install_config(self, name: str, config: ServiceConfig) -> None:
        self.configs.add(name)

    async def remove_config(self, name: str) -> None:
        self.configs.discard(name)

    def sweep_config_temps(self) -> Sequence[Path]:
        return []  # configs live in memory: no write can be cut short

    def reads_configs_from(self, directory: Path) -> bool:
        return False  # configs are installed through install_config, like supervisord's

    async def output_tail(self, name: str) -> str:
        return ""  # its services print nothing

    async def aclose(self) -> None:
        pass
