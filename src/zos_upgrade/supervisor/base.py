"""What every supervisor back-end offers, and the policies built on it (``stop_many``, ``restart_many``).

The back-ends (``zinit.py``, ``supervisord.py``) only translate; the policy of stopping a set of
services — poll, then SIGKILL in bounded rounds, then name the survivors — lives here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from zos_upgrade.supervisor.config import (
    ServiceConfig,
    normalize_signal,
    parse_service_config,
    render_service_config,
    validate_service_name,
)
from zos_upgrade.supervisor.errors import (
    AlreadyMonitored,
    InvalidServiceName,
    ProtocolError,
    ServiceIsDown,
    ServiceIsUp,
    StopFailed,
    SupervisorError,
    SupervisorUnavailable,
    UnknownService,
)

__all__ = [
    "OUTPUT_TAIL_BYTES",
    "OUTPUT_TAIL_LINES",
    "AlreadyMonitored",
    "InvalidServiceName",
    "ProtocolError",
    "ServiceConfig",
    "ServiceIsDown",
    "ServiceIsUp",
    "ServiceStatus",
    "StateFamily",
    "StopFailed",
    "Supervisor",
    "SupervisorError",
    "SupervisorUnavailable",
    "UnknownService",
    "last_lines",
    "normalize_signal",
    "parse_service_config",
    "render_service_config",
    "restart_many",
    "stop_many",
    "validate_service_name",
]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# What output_tail returns at most: enough for an operator to see why a service died.
OUTPUT_TAIL_LINES = 20
OUTPUT_TAIL_BYTES = 2048

# SPEC 10: poll once a second; after the timeout, SIGKILL once a second, at most 10 rounds. The first
# polls come sooner (10 ms, doubling up to the interval): a service that stops in a few ms would
# otherwise cost the upgrade a whole interval; six more polls in the first second are nothing to a
# supervisor.
POLL_INTERVAL = 1.0
FIRST_POLL = 0.01
KILL_ROUNDS = 10


class StateFamily(StrEnum):
    """What a raw supervisor state means for stopping and probation."""

    RUNNING = "running"    # a process is alive (zinit Running; supervisord RUNNING, STOPPING)
    EXITED = "exited"      # no process: success, error, failure, blocked, stopped, fatal
    STARTING = "starting"  # being spawned or backing off before a retry
    UNKNOWN = "unknown"    # the supervisor does not know yet (zinit Unknown)


def _no_after() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ServiceStatus:
    """One service as its supervisor reports it.

    ``state`` is the supervisor's raw text (``Error(Exited(Pid(12), 1))``, ``RUNNING``), ``family``
    what it means, ``detail`` the rest (exit code, signal, supervisord description), ``target`` the
    wanted state in lower case (``up``/``down``), ``after`` the dependencies and their raw states.
    """

    name: str
    pid: int
    state: str
    family: StateFamily
    detail: str = ""
    target: str = "down"
    after: Mapping[str, str] = field(default_factory=_no_after)

    @property
    def is_down(self) -> bool:
        """No process left to stop: exited, or never spawned (pid 0 and not about to start)."""
        if self.family is StateFamily.EXITED:
            return True
        return self.pid == 0 and self.family is StateFamily.UNKNOWN

    @property
    def is_running(self) -> bool:
        return self.family is StateFamily.RUNNING


@runtime_checkable
class Supervisor(Protocol):
    """A process supervisor the upgrader drives. Every method validates names before sending."""

    async def list(self) -> dict[str, str]:
        """Every managed service -> its raw state."""
        ...

    async def status(self, name: str) -> ServiceStatus:
        """Raises UnknownService if the service is not managed."""
        ...

    async def start(self, name: str) -> None:
        """Set the target up and spawn it (no error if already running)."""
        ...

    async def stop(self, name: str) -> None:
        """Set the target down and send the stop signal; returns without waiting (see stop_many)."""
        ...

    async def monitor(self, name: str) -> None:
        """Begin managing a service whose config is installed; it starts (target up).

        Raises AlreadyMonitored, or UnknownService when no config is installed.
        """
        ...

    async def forget(self, name: str) -> None:
        """Stop managing a service; only allowed when it is down (else ServiceIsUp)."""
        ...

    async def kill(self, name: str, signal: str) -> None:
        """Send ``signal`` (``"SIGKILL"``, ``"TERM"``...) to its process; ServiceIsDown if none."""
        ...

    async def install_config(self, name: str, config: ServiceConfig) -> None:
        """Write the service's config file durably (takes effect at the next monitor)."""
        ...

    async def output_tail(self, name: str) -> str:
        """The last lines the service printed (stdout and stderr, at most OUTPUT_TAIL_LINES lines and
        OUTPUT_TAIL_BYTES bytes, oldest first); "" when the supervisor keeps none or cannot say.
        Best effort: it never raises (it explains a failure; it must not replace it)."""
        ...

    async def remove_config(self, name: str) -> None:
        """Delete the service's config file (no error if it is absent)."""
        ...

    def sweep_config_temps(self) -> Sequence[Path]:
        """Remove the temp files of config writes a kill cut short (call where no write can be
        running: at start-up, under the node's lock); return them."""
        ...

    def reads_configs_from(self, directory: Path) -> bool:
        """True when this supervisor reads its service configs straight from the files in
        ``directory`` (zinit and a node's ``etc/zinit``): a release's files there ARE the configs,
        so whoever installs the release must not render them again with ``install_config``."""
        ...

    async def aclose(self) -> None:
        """Release connections; the client must not be used afterwards."""
        ...


def last_lines(text: str, *, lines: int = OUTPUT_TAIL_LINES, size: int = OUTPUT_TAIL_BYTES) -> str:
    """The end of ``text``: at most ``lines`` lines and ``size`` bytes, whole lines where possible,
    control characters (terminal escapes) replaced, trailing blank lines dropped."""
    kept = text.replace("\r\n", "\n").rstrip().splitlines()[-lines:]
    clean = ["".join(c if c.isprintable() or c == "\t" else "?" for c in line) for line in kept]
    out = "\n".join(clean)
    encoded = out.encode()
    if len(encoded) > size:
        out = encoded[-size:].decode("utf-8", "ignore")
        if "\n" in out:  # start at a line boundary rather than mid-line
            out = out.split("\n", 1)[1]
    return out


def _unique_names(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        seen[validate_service_name(name)] = None
    return list(seen)


async def _still_up(sup: Supervisor, names: list[str]) -> list[str]:
    """The names whose service still has a process (unknown services count as down)."""
    alive = []
    for name in names:
        try:
            status = await sup.status(name)
        except UnknownService:
            continue
        if not status.is_down:
            alive.append(name)
    return alive


async def _stopped(sup: Supervisor, name: str) -> bool:
    """Whether ``name`` is down with its target down: nothing for a stop to do (the transaction's
    stop step left it so). One status instead of a stop and a status; an exited service whose
    target is still up (zinit) is stopped, or it could not be forgotten."""
    try:
        status = await sup.status(name)
    except UnknownService:
        return True
    return status.is_down and status.target == "down"


async def stop_many(
    sup: Supervisor,
    names: Iterable[str],
    timeout: float,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    poll_interval: float = POLL_INTERVAL,
    kill_rounds: int = KILL_ROUNDS,
) -> None:
    """Stop every service and wait until each is down (SPEC 10).

    Sends stop to all, polls their status (after :data:`FIRST_POLL`, then twice as long each time up
    to every ``poll_interval``) until all are down or ``timeout`` passed; then sends SIGKILL to the
    survivors every ``poll_interval``, at most ``kill_rounds`` times, and raises StopFailed naming
    those still up. Never waits longer than about ``timeout + kill_rounds * poll_interval`` (the
    original could wait forever after one SIGKILL).
    """
    pending = _unique_names(names)
    for name in pending:
        try:
            await sup.stop(name)
        except UnknownService:
            log.info("stop of unknown service skipped", extra={"service": name})
    deadline = clock() + timeout
    pending = await _still_up(sup, pending)
    wait = FIRST_POLL
    while pending and (left := deadline - clock()) > 0:
        await sleep(min(wait, poll_interval, left))
        wait *= 2
        pending = await _still_up(sup, pending)
    rounds = 0
    while pending and rounds < kill_rounds:
        rounds += 1
        log.warning("services ignore stop, sending SIGKILL", extra={"services": pending, "round": rounds})
        for name in pending:
            # it may go down between the poll and the kill: the next poll sees it
            with contextlib.suppress(UnknownService, ServiceIsDown):
                await sup.kill(name, "SIGKILL")
        await sleep(poll_interval)
        pending = await _still_up(sup, pending)
    if pending:
        raise StopFailed(pending, rounds=rounds)


async def restart_many(
    sup: Supervisor,
    names: Iterable[str],
    stop_timeout: float = 10.0,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    poll_interval: float = POLL_INTERVAL,
    kill_rounds: int = KILL_ROUNDS,
) -> None:
    """(Re)start services from their installed configs, in zinit's order: forget, monitor, start.

    Every service the supervisor already knows is first stopped with ``stop_many`` — also one that
    has exited, because zinit forgets only a service whose target is down; one already down with
    its target down (stopped by the caller) is only asked for its status — so the new config is
    read at monitor; a service it does not know yet is simply monitored. Raises UnknownService if
    a config is missing, StopFailed if an old instance cannot be stopped (nothing is forgotten then).
    """
    wanted = _unique_names(names)
    known = await sup.list()
    old = [n for n in wanted if n in known and not await _stopped(sup, n)]
    if old:
        await stop_many(sup, old, stop_timeout, sleep=sleep, clock=clock,
                        poll_interval=poll_interval, kill_rounds=kill_rounds)
    for name in wanted:
        if name in known:
            await sup.forget(name)
        await sup.monitor(name)
        await sup.start(name)
        log.info("service restarted", extra={"service": name})
