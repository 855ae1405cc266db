"""The upgrade loop that runs on a node: start-up, rounds over the policies, one transaction at a time.

Start-up, in this order: sweep stale mounts, recover an unfinished transaction, rebuild the boot
files from the manifests when ``/tmp`` lost them, then start each policy from what the node runs.
A recovery that fails (a rollback that could not finish, at start-up or in a transaction) is
retried at every round with the rounds' backoff, and nothing is applied until it succeeds
(``status.json`` says so: ``recovery``). A journal that cannot be read at all refuses the start
(:class:`JournalBlocked`) naming the way out, ``zos-upgrade recover --from-backup``.
Every round asks each policy once (``step``: check, apply, confirm on success) — the bins
repository first, then the boot link or the release server — and applies what they propose. An
event is confirmed only after its transaction succeeded, so a failed upgrade is proposed again
(after a backoff) instead of forgotten. A node without boot files is simply at version 0.0.0: the
first event installs the boot flist (first install). After every round the daemon writes
``status.json`` (``zos-upgrade status``), also when a transaction starts (``running``) and before it
sleeps (``next_check``); what it read there at start-up (the last upgrade, the channel's version)
carries over, so a restart does not make ``status`` forget the last upgrade.

Why rounds and not the watchers' ``watch()`` iterators: one loop makes "one transaction at a time"
true by construction across sources, an event is confirmed before the watcher looks again, and every
check (not only those that found something) updates the status.

At ~450 lines this module is one on purpose: start-up, the recovery retried in the loop, the rounds
and the status record all read and write the same per-process state (the backoff, the busy flag for
SIGTERM, the last outcome and upgrade), which the policies deliberately do not see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from zos_upgrade import __version__
from zos_upgrade.daemon.outcome import CheckOutcome, classify_failure, merge_outcomes, report_fields
from zos_upgrade.daemon.policy import CheckFailed, Followed, Transaction
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.metrics import Metrics, NullMetrics
from zos_upgrade.versions import ZERO, Version, parse_version

if TYPE_CHECKING:
    from zos_upgrade.daemon.feedback import FleetFeedback
    from zos_upgrade.daemon.fleetlock import FleetLockGate
    from zos_upgrade.daemon.memory import ReleaseMemory
    from zos_upgrade.daemon.ports import BootPort, UpgraderPort
    from zos_upgrade.daemon.strategy import WindowGate
    from zos_upgrade.hub.flists import RepoFList
    from zos_upgrade.node.events import FListEvent
    from zos_upgrade.node.identity import NodeIdentity
    from zos_upgrade.node.state import CheckResult, DaemonState, RecoveryRecord, RunningRecord, UpgradeRecord

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_RESTART", "RECOVER_COMMAND", "Daemon", "JournalBlocked",
           "NodeParts"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
# EX_TEMPFAIL: the upgrader replaced its own program; the supervisor must start the new one.
EXIT_RESTART = 75

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
RECOVER_COMMAND = "zos-upgrade recover --from-backup --config FILE"


class JournalBlocked(ZosUpgradeError):
    """The journal cannot be read: no recovery can tell what the interrupted transaction changed."""


@dataclass
class NodeParts:
    """Everything the daemon drives, built once per process (:mod:`zos_upgrade.daemon.wiring`).

    ``policies`` run in this order every round (bins first, then the boot link or release server).
    """

    upgrader: UpgraderPort
    boot: BootPort
    policies: list[Followed] = field(default_factory=list)
    sweep: Callable[[], object] | None = None
    memory: ReleaseMemory | None = None  # the policies' failed releases (metrics count them)
    feedback: FleetFeedback[Any] | None = None  # fleet reports to the hub (None: none sent)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    identity: NodeIdentity | None = None  # the node in the fleet (status shows it)
    strategy: str = "immediate"           # [rollout] strategy
    window: WindowGate | None = None      # periodic: the maintenance windows (status: the next one)
    fleet_lock: FleetLockGate | None = None  # fleet_lock: the slot, released at start-up if held

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            try:
                await close()
            except Exception as exc:  # closing must not hide why the daemon stopped
                log.warning("closing a client failed", extra={"error": str(exc)})


class Daemon:
    """The loop: start-up, rounds, one transaction at a time, the status record, SIGTERM."""

    def __init__(
        self,
        parts: NodeParts,
        *,
        state_dir: Path | None = None,
        source: str = "",
        interval: float = 600.0,
        jitter: float = 0.0,
        metrics: Metrics | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        max_backoff: float = 3600.0,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"check interval must be positive, got {interval!r}")
        self.parts = parts
        self.state_dir = state_dir
        self.source = source
        self.interval = interval
        self.jitter = jitter
        self.metrics = metrics or NullMetrics()
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        from zos_upgrade.net import Backoff

        self._rng = rng or random.Random()
        self._backoff = Backoff(base=interval, cap=max(interval, max_backoff), rng=self._rng)
        self._busy = False
        self._stop_requested = False
        self._main: asyncio.Task[object] | None = None
        self.last: CheckOutcome | None = None
        self.last_upgrade: UpgradeRecord | None = None
        self.recovery: RecoveryRecord | None = None  # an unfinished transaction awaits recovery
        self._recovery_due = False  # retry at the next round (set after each sleep)
        self.running: RunningRecord | None = None  # the transaction under way
        self.next_check: float | None = None
        self.channel: str | None = None  # the release the followed source offered at the last check
        self._restored: DaemonState | None = None  # status.json as the previous daemon left it
        self._sender: asyncio.Task[int] | None = None  # the fleet reports' background sender
        self.waiting: str | None = None  # why the running transaction waits (a FleetLock slot)
        if parts.fleet_lock is not None:
            parts.fleet_lock.on_wait = self._lock_wait

    def _lock_wait(self, why: str | None) -> None:
        self.waiting = why
        self._write_state()

    # --- what the node runs (the policies' DaemonContext) --------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def now(self) -> float:
        return self._clock()

    def current_event(self) -> FListEvent | None:
        """The boot flist the node runs, or None on a node that was never installed."""
        boot = self.parts.boot
        if str(boot.detect_boot_method()) != "flist":
            return None
        try:
            return boot.current()
        except ZosUpgradeError as exc:  # garbled boot files must not crash the daemon (SPEC 12)
            log.error("boot files unreadable, treating the node as 0.0.0", extra={"error": str(exc)})
            return None

    def current_version(self) -> Version:
        event = self.current_event()
        if event is None:
            return ZERO
        try:
            return event.version()
        except ZosUpgradeError as exc:
            log.error("boot flist names no version, treating the node as 0.0.0", extra={"error": str(exc)})
            return ZERO

    def current_bins(self) -> Mapping[str, RepoFList]:
        try:
            return dict(self.parts.boot.current_bins())
        except ZosUpgradeError as exc:
            log.error("installed bins unreadable, treating them as none", extra={"error": str(exc)})
            return {}

    # --- start-up ------------------------------------------------------------------------------

    async def start_up(self) -> None:
        """Sweep, recover, make the boot files agree with the manifests, then start the policies."""
        self._restore_state()
        if self.parts.sweep is not None:
            await asyncio.to_thread(self.parts.sweep)
        if await self._recover():
            await self._settle()
        for policy in self.parts.policies:
            policy.start(self)

    async def _settle(self) -> None:
        """A FleetLock slot held from before (a crash, a release the server did not confirm): the
        node is steady now, give it back (Zincati's "initialization" state)."""
        if self.parts.fleet_lock is not None:
            await self.parts.fleet_lock.settle()

    def _restore_state(self) -> None:
        """Carry over what the previous daemon recorded: its last upgrade and the channel's version."""
        if self.state_dir is None:
            return
        from zos_upgrade.node.state import read_state

        try:
            self._restored = read_state(self.state_dir)
        except ZosUpgradeError as exc:  # a report, not a reason to stop: it is rewritten at the next round
            log.warning("previous daemon state unreadable, starting a new one", extra={"error": str(exc)})
            return
        if self._restored is not None:
            self.last_upgrade = self.last_upgrade or self._restored.last_upgrade
            self.channel = self.channel or self._restored.channel_version

    async def _recover(self) -> bool:
        """One recovery attempt; True when no unfinished transaction is left (boot files rebuilt).
        A failure is recorded in ``self.recovery``; an unreadable journal raises JournalBlocked."""
        from zos_upgrade.upgrade import JournalUnreadable

        try:
            recovered = await self.parts.upgrader.recover()
        except JournalUnreadable as exc:
            raise JournalBlocked(
                f"{exc}. The daemon cannot tell what the interrupted transaction changed and applies "
                f"nothing: stop it and run `{RECOVER_COMMAND}` to put the node back on its last "
                "committed release from the backup (docs/operations.md, 'Recovering after a crash')"
            ) from exc
        except ZosUpgradeError as exc:
            self._recovery_pending(f"{type(exc).__name__}: {exc}", attempt=True)
            return False
        if recovered:
            log.warning("unfinished transaction recovered", extra={"recovery": recovered})
        if self.recovery is not None:
            log.warning("recovery completed", extra={"attempts": self.recovery.attempts + 1})
            self.recovery = None
        await asyncio.to_thread(self.parts.upgrader.sync_boot_files)
        return True

    def _recovery_pending(self, error: str, *, attempt: bool) -> None:
        from zos_upgrade.node.state import RecoveryRecord

        prev = self.recovery
        attempts = (prev.attempts if prev else 0) + (1 if attempt else 0)
        self.recovery = RecoveryRecord(since=prev.since if prev else self._clock(), attempts=attempts,
                                       last_error=error)
        self._recovery_due = False  # the next round after the next sleep (the rounds' backoff)
        log.error("recovery pending: retried every round with backoff, nothing is applied meanwhile",
                  extra={"attempts": attempts, "error": error})

    # --- one transaction -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _critical(self) -> Iterator[None]:
        """A stretch SIGTERM must not cut: it is let finish (or roll back) before the daemon exits."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    async def transaction(self, what: str, call: Transaction, *, to_version: str | None,
                          release: str | None = None) -> CheckOutcome:
        """Run one transaction and record how it ended. RestartNeeded passes through.

        ``to_version`` is the boot release it moves to (recorded as ``last_upgrade`` in the status);
        None for a bins package, which is not the node's release. ``release``: its repo/name on the
        hub, reported to the hub when it ends (best effort, in the background).
        """
        before, start = str(self.current_version()), self._monotonic()
        outcome = await self._transaction(what, call, to_version=to_version)
        feedback = self.parts.feedback
        if feedback is not None and release is not None and to_version is not None:
            feedback.ended(release, version=to_version, version_before=before,
                           version_after=outcome.version, result=outcome.result,
                           reason=outcome.detail, duration=self._monotonic() - start)
            self.send_reports()
        return outcome

    def send_reports(self) -> None:
        """Deliver the queued fleet reports in the background (one sender at a time)."""
        feedback = self.parts.feedback
        if feedback is None or (self._sender is not None and not self._sender.done()):
            return
        self._sender = asyncio.create_task(feedback.flush())

    async def reports_sent(self) -> None:
        """Wait for the background sender (bounded by its per-report timeout; errors are its own)."""
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender

    async def _transaction(self, what: str, call: Transaction, *, to_version: str | None) -> CheckOutcome:
        from zos_upgrade.node.state import RunningRecord, UpgradeRecord
        from zos_upgrade.upgrade import RestartNeeded, UpgradeFailed

        started, start = self._clock(), self._monotonic()
        from_version = str(self.current_version())
        log.info("transaction starts", extra={"what": what, "from_version": from_version,
                                              "to_version": to_version})
        self.running = RunningRecord(what=what, from_version=from_version, to_version=to_version,
                                     started=started)
        self.metrics.running(True)
        self._write_state()
        try:
            with self._critical():
                report = await call()
        except RestartNeeded:
            raise
        except ZosUpgradeError as exc:
            result, detail = classify_failure(exc)
            duration = self._monotonic() - start
            # what a failed transaction fetched before it failed was downloaded all the same
            partial_report = exc.report if isinstance(exc, UpgradeFailed) else None
            downloaded = partial_report.bytes_downloaded if partial_report else 0
            self.metrics.upgrade(result, duration=duration, bytes_downloaded=downloaded,
                                 blocks_reused=partial_report.blocks_from_cache if partial_report else 0)
            if to_version is not None:
                self.last_upgrade = UpgradeRecord(from_version=from_version, to_version=to_version,
                                                  started=started, duration=duration,
                                                  bytes_downloaded=downloaded, result=result)
            if result == "rollback-incomplete":  # a journal may be left: recover before anything else
                self._recovery_pending(detail, attempt=False)
            log.error("transaction did not apply", extra={
                "what": what, "result": result, "detail": detail, "from_version": from_version,
                "to_version": to_version, "current_version": str(self.current_version()),
                **report_fields(partial_report)})
            return CheckOutcome(self._clock(), result, str(self.current_version()), f"{what}: {detail}",
                                failed_step=exc.step if isinstance(exc, UpgradeFailed) else "")
        finally:
            self.running = None
            self.metrics.running(False)
        duration = self._monotonic() - start
        downloaded, reused = report.bytes_downloaded, report.blocks_from_cache
        self.metrics.upgrade("upgraded", duration=duration, bytes_downloaded=downloaded, blocks_reused=reused)
        if to_version is not None:
            self.last_upgrade = UpgradeRecord(from_version=from_version, to_version=to_version,
                                              started=started, duration=duration,
                                              bytes_downloaded=downloaded, result="upgraded")
        log.info("transaction applied", extra={
            "what": what, "from_version": from_version, "to_version": to_version,
            "duration": round(duration, 3), **report_fields(report)})
        return CheckOutcome(self._clock(), "upgraded", str(self.current_version()), "", [report])

    # --- rounds --------------------------------------------------------------------------------

    async def round(self) -> CheckOutcome:
        """Ask every policy once and apply what they propose; record the outcome. Never raises for
        a failed check or a failed upgrade (RestartNeeded and cancellation pass through)."""
        self.send_reports()  # what an earlier round could not deliver
        if self.recovery is not None:
            recovered = False
            if self._recovery_due:
                self._recovery_due = False
                with self._critical():
                    recovered = await self._recover()
            if not recovered:
                assert self.recovery is not None
                detail = (f"recovery of an unfinished transaction pending after {self.recovery.attempts} "
                          f"attempt(s), nothing applied meanwhile: {self.recovery.last_error}")
                return self.record(CheckOutcome(self._clock(), "rollback-incomplete",
                                                str(self.current_version()), detail))
        await self._settle()
        outcomes: list[CheckOutcome] = []
        for policy in self.parts.policies:
            while not self._stop_requested:
                try:
                    outcome = await policy.step(self)
                except CheckFailed as exc:  # the hub is down, answers garbage...: the next round retries
                    cause = exc.cause
                    log.error("check failed", exc_info=not isinstance(cause, ZosUpgradeError),
                              extra={"watcher": policy.name, "error": f"{type(cause).__name__}: {cause}"})
                    outcomes.append(CheckOutcome(self._clock(), "error", str(self.current_version()),
                                                 str(exc)))
                    break
                if outcome is None:
                    break
                outcomes.append(outcome)
                if not outcome.applied or not policy.repeats:
                    break  # a failed or held event is not confirmed: proposed again next round, never skipped
        seen = next((v for v in (p.channel() for p in self.parts.policies) if v is not None), None)
        if seen is not None:
            self.channel = str(seen)
        return self.record(merge_outcomes(outcomes, at=self._clock(), version=str(self.current_version())))

    def record(self, outcome: CheckOutcome) -> CheckOutcome:
        """Remember the outcome and write ``status.json`` for ``zos-upgrade status``."""
        self.last = outcome
        self.metrics.check(outcome.result, at=outcome.at, installed=outcome.version, channel=self.channel,
                           update_available=_newer(self.channel, outcome.version))
        if self.parts.memory is not None:
            held = self.parts.memory.count()
            if held is not None:
                self.metrics.held(held)
        self._write_state()
        log.info("check done", extra={"result": outcome.result, "version": outcome.version,
                                      "detail": outcome.detail})
        return outcome

    def _write_state(self) -> None:
        """``status.json`` from what the daemon knows now (before the first round of this process:
        the last check of the previous one)."""
        if self.state_dir is not None:
            from zos_upgrade.node.state import DaemonState, write_state

            outcome, prev = self.last, self._restored
            ident, window = self.parts.identity, self.parts.window
            version: str | None = str(self.current_version())
            at: float | None = None
            result: CheckResult | None = None
            error: str | None = None
            if outcome is not None:
                # a held release is not a failure of this round, but what the operator must read
                shown = outcome.failed or outcome.result in ("held", "waiting")
                version, at, result = outcome.version, outcome.at, outcome.result
                error = (outcome.detail or None) if shown else None
            elif prev is not None:
                version, at, result, error = (prev.current_version, prev.last_check, prev.last_result,
                                              prev.last_error)
            state = DaemonState(
                updated=self._clock(), pid=os.getpid(), source=self.source or None, current_version=version,
                last_check=at, last_result=result, last_error=error, last_upgrade=self.last_upgrade,
                recovery=self.recovery, running=self.running, next_check=self.next_check,
                channel_version=self.channel, program_version=__version__,
                node_id=ident.id if ident else None,
                group=ident.group if ident else None, strategy=self.parts.strategy, waiting=self.waiting,
                next_window=window.next_open() if window else None,
                window_closes=window.closes_at() if window else None,
            )
            try:
                write_state(self.state_dir, state)
            except (OSError, ZosUpgradeError) as exc:
                log.error("cannot write daemon state", extra={"error": str(exc)})

    # --- the loop ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM: stop now if idle; else let the transaction finish (or roll back) first."""
        if not self._stop_requested:
            log.info("stop requested", extra={"in_transaction": self._busy})
        self._stop_requested = True
        if self.parts.fleet_lock is not None:  # a wait for a slot ends: the transaction rolls back
            self.parts.fleet_lock.stop()
        if not self._busy and self._main is not None:
            self._main.cancel()

    def _delay(self, failures: int) -> float:
        if failures:
            return self._backoff.delay(failures + 1)
        return self.interval + self._rng.uniform(0, self.jitter)

    async def run(self, *, once: bool) -> int:
        """Start up, then one round (``once``) or rounds until stopped; the process exit code."""
        self._main = asyncio.current_task()
        try:
            try:
                with self._critical():
                    await self.start_up()
                self.metrics.installed(str(self.current_version()), self.channel)
            except JournalBlocked as exc:  # status says so too: the refusal is what the operator sees
                log.error("unfinished transaction cannot be recovered", extra={"error": str(exc)})
                self.record(CheckOutcome(self._clock(), "rollback-incomplete", str(self.current_version()),
                                         str(exc)))
                raise
            failures = 0
            while not self._stop_requested:
                self.next_check = None  # checking now
                outcome = await self.round()
                if once:
                    await self.reports_sent()  # a one-shot run delivers its reports before it exits
                    return EXIT_FAILED if outcome.failed else EXIT_OK
                failures = failures + 1 if outcome.failed else 0
                if self._stop_requested:
                    break
                delay = self._delay(failures)
                window = self.parts.window
                opens = window.next_open() if window is not None and outcome.result == "waiting" else None
                if opens is not None:  # waiting for a window: look again as it opens, not an interval later
                    delay = min(delay, max(0.5, opens - self._clock()))
                self.next_check = self._clock() + delay  # status shows when the daemon looks again
                if self.recovery is not None:
                    self.recovery = msgspec.structs.replace(self.recovery, next_try=self.next_check)
                self._write_state()
                # after the status names the next check: `status` never sees a round half-recorded
                _give_back_memory()
                _dump_modules()
                await self._sleep(delay)
                self._recovery_due = True
            log.info("stopped")
            return EXIT_OK
        except asyncio.CancelledError:
            if self._stop_requested:
                log.info("stopped by signal")
                return EXIT_OK
            raise


def _give_back_memory() -> None:
    """Return the heap a round freed to the system: a start-up or a transaction frees far more than
    an idle daemon keeps (parsed flists, block buffers), and glibc keeps freed arenas mapped unless
    asked. A few milliseconds a round; without glibc (musl) only the collection runs."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # no libc symbol: nothing to trim
        pass


# a test-only switch (tests/daemon/test_idle_imports.py, benchmarks/daemon_idle.py): after each
# round the names of the modules loaded are written to this file, so a test can tell which stacks
# an idle daemon carries without attaching to it
DUMP_MODULES_ENV = "ZOS_UPGRADE_DUMP_MODULES"


def _dump_modules() -> None:
    target = os.environ.get(DUMP_MODULES_ENV)
    if target:
        import sys

        from zos_upgrade.fsutil import atomic_write_bytes

        atomic_write_bytes(Path(target), "\n".join(sorted(sys.modules)).encode() + b"\n")


def _newer(channel: str | None, installed: str) -> bool:
    """The channel offers a release above the installed one (the ``update_available`` gauge)."""
    if channel is None:
        return False
    try:
        return parse_version(channel) > parse_version(installed)
    except ZosUpgradeError:  # a version the node cannot order is no update it can take
        return False
