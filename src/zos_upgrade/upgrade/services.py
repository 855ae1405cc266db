"""Driving the supervisor for a transaction: install configs, restart, remove, and probation.

The policy (which services) is in ``plan.py``; this module only carries it out through the
``Supervisor`` protocol, so it works the same on zinit and supervisord.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from zos_upgrade.supervisor import (
    ServiceIsUp,
    ServiceStatus,
    StateFamily,
    Supervisor,
    UnknownService,
    parse_service_config,
    restart_many,
    stop_many,
)
from zos_upgrade.upgrade.errors import ProbationFailed

__all__ = ["install_configs", "probation", "remove_services", "restart_services", "stop_services"]

log = logging.getLogger(__name__)

# a service that runs again when it is forgotten (it restarted after the stop): forget tries in all
_FORGET_TRIES = 5  # 3 was not always enough on a loaded machine (a CI run ended RollbackIncomplete)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]



def _oneshot_succeeded(status: ServiceStatus) -> bool:
    """zinit says ``Success``; supervisord says ``EXITED`` and its detail carries the exit status."""
    if status.state == "Success":
        return True
    return status.state == "EXITED" and status.detail.startswith("exited with status 0")


async def install_configs(sup: Supervisor, services: Mapping[str, str], names: Sequence[str]) -> None:
    for name in names:
        cfg = parse_service_config(services[name], source=f"service {name}")
        await sup.install_config(name, cfg)


async def restart_services(
    sup: Supervisor, names: Sequence[str], *, stop_timeout: float, sleep: Sleep, clock: Clock
) -> None:
    if names:
        await restart_many(sup, names, stop_timeout, sleep=sleep, clock=clock,
                           poll_interval=_poll(stop_timeout))


def _poll(stop_timeout: float) -> float:
    # SPEC 10 polls once a second; short timeouts (tests, small services) poll faster
    return min(1.0, max(0.05, stop_timeout / 10))


async def remove_services(
    sup: Supervisor, names: Sequence[str], *, stop_timeout: float, sleep: Sleep, clock: Clock,
    remove_configs: bool = True,
) -> None:
    """Stop, forget and delete the configs of services; absent ones are fine (idempotent)."""
    if not names:
        return
    await stop_services(sup, names, stop_timeout=stop_timeout, sleep=sleep, clock=clock)
    for name in names:
        for attempt in range(_FORGET_TRIES):
            try:
                with contextlib.suppress(UnknownService):
                    await sup.forget(name)
                break
            except ServiceIsUp:
                # a crash-looping service caught between its exit and the supervisor's restart looked
                # down to the stop; it runs again: stop it again, then forget it
                if attempt == _FORGET_TRIES - 1:
                    raise
                await stop_services(sup, [name], stop_timeout=stop_timeout, sleep=sleep, clock=clock)
        if remove_configs:
            await sup.remove_config(name)


async def stop_services(
    sup: Supervisor, names: Sequence[str], *, stop_timeout: float, sleep: Sleep, clock: Clock
) -> None:
    if names:
        await stop_many(sup, names, stop_timeout, sleep=sleep, clock=clock, poll_interval=_poll(stop_timeout))


async def probation(
    sup: Supervisor,
    names: Sequence[str],
    services: Mapping[str, str],
    *,
    duration: float,
    start_timeout: float,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> None:
    """Every service must come up within ``start_timeout``, then keep the same pid for ``duration``.

    A oneshot must end in success instead. Raises ProbationFailed naming the service and its state.
    """
    if not names:
        return
    oneshot = {n for n in names if parse_service_config(services[n], source=n).oneshot}
    interval = min(0.2, max(0.02, duration / 10))
    start_deadline = clock() + start_timeout
    pids: dict[str, int] = {}
    done: set[str] = set()
    # 1. wait until each long-running service runs and each oneshot finished
    while True:
        pending = []
        for name in names:
            if name in done or name in pids:
                continue
            status = await _status(sup, name)
            if name in oneshot:
                if status.family is StateFamily.EXITED:
                    if not _oneshot_succeeded(status):
                        raise await _failed(sup, [name], f"oneshot service {name} did not succeed: "
                                                         f"{status.state} {status.detail}".rstrip())
                    done.add(name)
                    continue
            elif status.family is StateFamily.RUNNING and status.pid > 0:
                pids[name] = status.pid
                continue
            elif status.family is StateFamily.EXITED or status.state.upper() == "BACKOFF":
                # supervisord BACKOFF: it exited before counting as started; it will not get better
                raise await _failed(sup, [name],
                                    f"service {name} is not running: {status.state} {status.detail}".rstrip())
            pending.append(name)
        if not pending:
            break
        if clock() >= start_deadline:
            message = f"services not up after {start_timeout:g}s: {', '.join(pending)}"
            raise await _failed(sup, pending, message)
        await sleep(interval)
    # 2. the long-running ones must stay up, same process, for the whole probation (none: step 1 saw
    # each one up, and asking again at once would only repeat that answer)
    deadline = clock() + duration
    while duration > 0:
        for name, pid in pids.items():
            status = await _status(sup, name)
            if status.family is not StateFamily.RUNNING or status.pid != pid:
                raise await _failed(sup, [name], (
                    f"service {name} did not stay up during the {duration:g}s probation: "
                    f"pid {pid} -> {status.pid}, state {status.state} {status.detail}").rstrip())
        if clock() >= deadline:
            break
        await sleep(min(interval, max(0.0, deadline - clock())))
    log.info("probation passed", extra={"services": list(names), "seconds": duration})


async def _failed(sup: Supervisor, names: Sequence[str], message: str) -> ProbationFailed:
    """The failure, with what each failed service printed last: the supervisor's state says THAT it
    died ("BACKOFF Exited too quickly"), its own output usually says WHY."""
    for name in names:
        tail = await sup.output_tail(name)
        if tail:
            message += f"\n--- last output of {name} ---\n{tail}"
    return ProbationFailed(message)


async def _status(sup: Supervisor, name: str) -> ServiceStatus:
    try:
        return await sup.status(name)
    except UnknownService as exc:
        raise ProbationFailed(f"service {name} is not managed by the supervisor: {exc}") from exc
