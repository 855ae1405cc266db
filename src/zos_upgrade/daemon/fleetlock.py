"""The ``fleet_lock`` strategy: the node's FleetLock slot around the disruptive part of a transaction.

The Upgrader asks :meth:`FleetLockGate.take` in its ``lock`` step (before any service stops) and
:meth:`FleetLockGate.release` once the node is steady (committed or rolled back). ``take`` never
returns without the slot: a lock server that says no (the group's semaphore is full) or does not
answer is asked again with backoff, for as long as it takes — only the daemon stopping ends the
wait (:meth:`stop`, SIGTERM: :class:`LockWaitAborted`, and the transaction rolls back its hooks).
That the node may hold a slot is recorded durably (``<state>/fleet-lock.json``) before it first
asks — so a crash between the server's yes and anything after it still leaves the record — and the
record is removed only once the server confirmed ``steady-state``; a daemon that finds it at
start-up (it crashed, was stopped while waiting, or the release found the server down) gives the
slot back first (:meth:`settle`, Zincati's "initialization" state), and retries that every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import atomic_write_bytes, fsync_dir
from zos_upgrade.net import Backoff
from zos_upgrade.rollout.fleetlock import FleetLockClient, FleetLockError

__all__ = ["HELD_FILE", "FleetLockGate", "LockWaitAborted"]

log = logging.getLogger(__name__)

HELD_FILE = "fleet-lock.json"
Sleep = Callable[[float], Awaitable[None]]


class LockWaitAborted(ZosUpgradeError):
    """The daemon is stopping while it waited for a FleetLock slot: the transaction does not go on."""


class _Held(msgspec.Struct):
    """The node may hold a slot of ``group`` at ``base_url`` (asked since ``since``)."""

    base_url: str
    id: str
    group: str
    since: float


class FleetLockGate:
    """The daemon's DisruptGate for ``fleet_lock`` (``upgrade.context.DisruptGate``)."""

    def __init__(self, client: FleetLockClient, state_dir: Path, *, node_id: str, group: str,
                 sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.time,
                 backoff: Backoff | None = None) -> None:
        self.client, self.state_dir = client, state_dir
        self.node_id, self.group = node_id, group
        self._sleep, self._clock = sleep, clock
        self._backoff = backoff or Backoff(base=1.0, cap=60.0, rng=random.Random())
        # status: why the transaction waits (None: not waiting); the daemon sets it to its own
        self.on_wait: Callable[[str | None], None] = lambda _why: None
        self._stopped = False
        self._stop_event: asyncio.Event | None = None
        self.attempts = 0  # pre-reboot calls of the last take (tests, logs)

    def stop(self) -> None:
        """The daemon is stopping: a wait for a slot ends now (LockWaitAborted)."""
        self._stopped = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` (the injected sleep), or less when :meth:`stop` is called meanwhile."""
        self._stop_event = self._stop_event or asyncio.Event()
        if self._stopped:
            return
        nap = asyncio.ensure_future(self._sleep(delay))
        woken = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait({nap, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (nap, woken):
                task.cancel()

    @property
    def held_path(self) -> Path:
        return self.state_dir / HELD_FILE

    def holds(self) -> bool:
        return self.held_path.exists()

    async def take(self) -> None:
        self.attempts = 0
        # durable before the first ask: from the server's yes on, a crash still gives the slot back
        record = _Held(base_url=self.client.base_url, id=self.node_id, group=self.group, since=self._clock())
        atomic_write_bytes(self.held_path, msgspec.json.encode(record) + b"\n")
        try:
            while True:
                self.attempts += 1
                try:
                    await self.client.pre_reboot()
                except FleetLockError as exc:
                    delay = self._backoff.delay(self.attempts)
                    why = f"waiting for a FleetLock slot ({exc}); asking again in {delay:.0f}s"
                    log.warning("no FleetLock slot yet", extra={"attempt": self.attempts, "error": str(exc),
                                                                  "delay": round(delay, 3)})
                    self.on_wait(why)
                    if self._stopped:
                        raise LockWaitAborted(f"stopping while {why}") from exc
                    await self._pause(delay)
                    if self._stopped:
                        raise LockWaitAborted("stopping while waiting for a FleetLock slot") from exc
                    continue
                break
        finally:
            self.on_wait(None)
        log.info("FleetLock slot taken", extra={"attempts": self.attempts, "group": self.group})

    async def release(self) -> None:
        """Give the slot back; a server that does not confirm leaves the record for :meth:`settle`."""
        try:
            await self.client.steady_state()
        except FleetLockError as exc:
            log.error("FleetLock slot not released yet; retried every round",
                      extra={"error": str(exc), "group": self.group})
            return
        with contextlib.suppress(FileNotFoundError):
            self.held_path.unlink()
            fsync_dir(self.state_dir)
        log.info("FleetLock slot released", extra={"group": self.group})

    async def settle(self) -> None:
        """A slot recorded as held (a crash, or a release the server did not confirm): release it."""
        if self.holds():
            await self.release()
