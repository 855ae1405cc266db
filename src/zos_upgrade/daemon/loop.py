"""The upgrade loop that runs on a node (``zos-upgrade daemon``).

Start-up, in this order: take the node's lock, sweep stale mounts, recover an unfinished
transaction, rebuild the boot files from the manifests when ``/tmp`` lost them. Then every round
asks each watcher once (``check()``): the bins repository first (install/uninstall by diff), then
the boot flist link or the release server, and applies what they propose, one transaction at a
time. A watcher's event is confirmed only after its transaction succeeded, so a failed upgrade is
proposed again (after a backoff) instead of forgotten. A node without boot files is simply at
version 0.0.0: the first event installs the boot flist and writes the boot files (first install).
After every round the daemon writes ``status.json`` (``zos-upgrade status``).

Why rounds of ``check()`` and not the watchers' ``watch()`` iterators: one loop makes "one
transaction at a time" true by construction across watchers, an event is confirmed before the
watcher looks again, and every check (not only those that found something) updates the status.

The policy lives in :class:`Daemon`; it reaches the layers below through the small protocols
declared here, and :mod:`zos_upgrade.daemon_wiring` builds the real ones from the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from zos_upgrade.config import Config
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.lock import DaemonLock
from zos_upgrade.metrics import Metrics, NullMetrics, start_metrics
from zos_upgrade.versions import ZERO, Version

# The upgrade, node and net layers are imported where they are used: this module is imported by the
# CLI at start-up (for its exit codes), and every `zos-upgrade` command would otherwise pay for them.
if TYPE_CHECKING:
    from zos_upgrade.node.state import UpgradeRecord

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_RESTART",
    "CheckOutcome",
    "Daemon",
    "NodeParts",
    "build_parts",
    "run_daemon",
]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
# EX_TEMPFAIL: the upgrader replaced its own program; the supervisor must start the new one.
EXIT_RESTART = 75

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# outcome of a round, worst first (the names of node.state.CheckResult)
_SEVERITY = ("rollback-incomplete", "error", "failed", "rolled-back", "upgraded", "up-to-date")


# --- what the daemon needs from the layers below -------------------------------------------------


class UpgraderPort(Protocol):
    """The slice of :class:`zos_upgrade.upgrade.upgrader.Upgrader` the daemon drives."""

    async def recover(self) -> str | None: ...
    async def upgrade(self, from_event: Any, to_event: Any) -> Any: ...
    async def upgrade_release(self, release: Any, version: Version) -> Any: ...
    async def install_binary(self, flist: Any) -> Any: ...
    async def uninstall_binary(self, fqdn: str) -> Any: ...
    def sync_boot_files(self) -> None: ...


class WatcherPort(Protocol):
    """A watcher of :mod:`zos_upgrade.watch`: one look, and the confirmation of an event."""

    async def check(self) -> Any | None: ...
    def confirm(self, value: Any) -> None: ...


@dataclass
class NodeParts:
    """Everything the daemon drives, built once per process.

    The watcher factories take what the node runs at the end of start-up (a version, or the
    installed bins); they are called once at start-up (the publisher's once more after a first
    install, to go on at the configured pace). ``None`` means that source is not configured.
    """

    upgrader: UpgraderPort
    boot: Any  # zos_upgrade.node.boot.Boot
    sweep: Callable[[], object] | None = None
    boot_watcher: Callable[[Version], WatcherPort] | None = None
    bins_watcher: Callable[[Mapping[str, Any]], WatcherPort] | None = None
    # (current, jump_to_latest): jump is forced for a first install, see Daemon.start_up
    publisher_watcher: Callable[[Version, bool], WatcherPort] | None = None
    jump_to_latest: bool = False
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            try:
                await close()
            except Exception as exc:  # closing must not hide why the daemon stopped
                log.warning("closing a client failed", extra={"error": str(exc)})


@dataclass
class CheckOutcome:
    """What one round (or one event) led to: the line ``zos-upgrade status`` shows."""

    at: float
    result: str  # one of _SEVERITY
    version: str
    detail: str = ""
    reports: list[Any] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.result in ("rollback-incomplete", "error", "failed", "rolled-back")


@dataclass
class _Applied:
    """How one transaction ended."""

    result: str  # upgraded | failed (refused, node unchanged) | rolled-back | rollback-incomplete
    report: Any
    detail: str

    @property
    def ok(self) -> bool:
        return self.result == "upgraded"


_REPORT_FIELDS = ("kind", "bytes_downloaded", "blocks_fetched", "blocks_from_cache", "release_bytes",
                  "files_added", "files_replaced", "files_removed", "services_restarted", "phases")


def _report_fields(report: Any) -> dict[str, Any]:
    """The upgrader's report as log fields (what ``zos-upgrade demo`` and operators read back)."""
    out: dict[str, Any] = {}
    for name in _REPORT_FIELDS:
        value = getattr(report, name, None)
        if value is None:
            continue
        if isinstance(value, dict):
            value = {str(k): round(v, 3) if isinstance(v, float) else v for k, v in value.items()}
        elif isinstance(value, (list, tuple, set, frozenset)):
            value = sorted(str(v) for v in value)
        out[name] = value
    return out


def _failure(exc: BaseException) -> tuple[str, str]:
    """(result, detail) of a transaction that raised (UpgradeFailed: reason, step, refused, rolled_back)."""
    step = getattr(exc, "step", None)
    reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
    detail = f"{reason} (at step {step})" if step else str(reason)
    if getattr(exc, "refused", False):
        return "failed", detail  # refused before anything changed: nothing was rolled back
    if getattr(exc, "rolled_back", False):
        return "rolled-back", detail
    # the rollback itself could not finish: the journal stays and the next start retries it
    return "rollback-incomplete", detail


def _version_of(event: Any) -> Version:
    """An event's version: ``ReleaseEvent.version`` is an attribute, ``FListEvent.version()`` a call."""
    version = event.version
    return version if isinstance(version, Version) else version()


def _fqdn(flist: Any) -> str:
    return flist if isinstance(flist, str) else str(flist.fqdn())


class Daemon:
    """The policy: what to apply, in which order, what to confirm, what to record."""

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
        self._main: asyncio.Task[Any] | None = None
        self._watchers: list[tuple[str, WatcherPort]] = []
        self._fresh_install = False
        self.last: CheckOutcome | None = None
        self.last_upgrade: UpgradeRecord | None = None

    # --- what the node runs --------------------------------------------------------------------

    def current_event(self) -> Any | None:
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
            return _version_of(event)
        except ZosUpgradeError as exc:
            log.error("boot flist names no version, treating the node as 0.0.0", extra={"error": str(exc)})
            return ZERO

    def current_bins(self) -> Mapping[str, Any]:
        try:
            return dict(self.parts.boot.current_bins())
        except ZosUpgradeError as exc:
            log.error("installed bins unreadable, treating them as none", extra={"error": str(exc)})
            return {}

    # --- start-up ------------------------------------------------------------------------------

    async def start_up(self) -> None:
        """Sweep, recover, make the boot files agree with the manifests, then create the watchers."""
        if self.parts.sweep is not None:
            await asyncio.to_thread(self.parts.sweep)
        recovered = await self.parts.upgrader.recover()
        if recovered:
            log.warning("unfinished transaction recovered", extra={"recovery": recovered})
        await asyncio.to_thread(self.parts.upgrader.sync_boot_files)
        p = self.parts
        self._watchers = []
        if p.bins_watcher is not None:
            self._watchers.append(("bins", p.bins_watcher(self.current_bins())))
        if p.publisher_watcher is not None:
            # a fresh node installs the latest release, not every release ever published in turn
            current = self.current_version()
            self._fresh_install = current == ZERO
            jump = p.jump_to_latest or self._fresh_install
            self._watchers.append(("publisher", p.publisher_watcher(current, jump)))
        if p.boot_watcher is not None:
            self._watchers.append(("boot", p.boot_watcher(self.current_version())))

    # --- one transaction -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _critical(self) -> Iterator[None]:
        """A stretch SIGTERM must not cut: it is let finish (or roll back) before the daemon exits."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    async def _transaction(
        self, what: str, call: Callable[[], Awaitable[Any]], *, to_version: str | None
    ) -> _Applied:
        """Run one transaction and classify how it ended. RestartNeeded passes through.

        ``to_version`` is the boot release it moves to (recorded as ``last_upgrade`` in the status);
        None for a bins package, which is not the node's release.
        """
        from zos_upgrade.node.state import UpgradeRecord
        from zos_upgrade.upgrade.errors import RestartNeeded

        started, start = self._clock(), self._monotonic()
        from_version = str(self.current_version())
        log.info("transaction starts", extra={"what": what, "from_version": from_version,
                                              "to_version": to_version})
        try:
            with self._critical():
                report = await call()
        except RestartNeeded:
            raise
        except ZosUpgradeError as exc:
            result, detail = _failure(exc)
            duration = self._monotonic() - start
            self.metrics.upgrade(result.replace("-", "_"), duration=duration)
            if to_version is not None:
                self.last_upgrade = UpgradeRecord(from_version=from_version, to_version=to_version,
                                                  started=started, duration=duration)
            log.error("transaction did not apply", extra={
                "what": what, "result": result, "detail": detail, "from_version": from_version,
                "to_version": to_version, "current_version": str(self.current_version()),
                **_report_fields(getattr(exc, "report", None))})  # UpgradeFailed: the partial report
            return _Applied(result, None, f"{what}: {detail}")
        duration = self._monotonic() - start
        downloaded = int(getattr(report, "bytes_downloaded", 0) or 0)
        reused = int(getattr(report, "blocks_from_cache", 0) or 0)
        self.metrics.upgrade("success", duration=duration, bytes_downloaded=downloaded, blocks_reused=reused)
        if to_version is not None:
            self.last_upgrade = UpgradeRecord(from_version=from_version, to_version=to_version,
                                              started=started, duration=duration,
                                              bytes_downloaded=downloaded)
        log.info("transaction applied", extra={
            "what": what, "from_version": from_version, "to_version": to_version,
            "duration": round(duration, 3), **_report_fields(report)})
        return _Applied("upgraded", report, "")

    # --- the three kinds of event --------------------------------------------------------------

    async def apply_boot(self, event: Any) -> CheckOutcome:
        """Upgrade (or first-install) the boot flist to ``event`` (an FListEvent)."""
        current = self.current_event()
        target = _version_of(event)
        what = f"boot {'install' if current is None else 'upgrade'} {event.fqdn()} {target}"
        done = await self._transaction(what, partial(self.parts.upgrader.upgrade, current, event),
                                       to_version=str(target))
        return self._outcome(done)

    async def apply_release(self, event: Any) -> CheckOutcome:
        """Apply the release a publisher proposed (a ReleaseEvent, its signature already verified)."""
        version = event.version
        done = await self._transaction(
            f"release {version}", partial(self.parts.upgrader.upgrade_release, event.upgrade, version),
            to_version=str(version))
        return self._outcome(done)

    async def apply_bins(self, event: Any) -> CheckOutcome:
        """Install what the bins repository added or changed, uninstall what it dropped (a RepoEvent)."""
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        for flist in event.to_add:
            steps.append((f"install {_fqdn(flist)}", partial(self.parts.upgrader.install_binary, flist)))
        for flist in event.to_del:
            name = _fqdn(flist)
            steps.append((f"uninstall {name}", partial(self.parts.upgrader.uninstall_binary, name)))
        outcomes: list[CheckOutcome] = []
        for what, call in steps:
            if self._stop_requested:
                break
            outcomes.append(self._outcome(await self._transaction(what, call, to_version=None)))
        return self._merge(outcomes)

    def _outcome(self, done: _Applied) -> CheckOutcome:
        reports = [done.report] if done.ok else []
        return CheckOutcome(self._clock(), done.result, str(self.current_version()), done.detail, reports)

    def _merge(self, outcomes: list[CheckOutcome]) -> CheckOutcome:
        """One status line for a round that may have run several transactions: the worst wins."""
        if not outcomes:
            return CheckOutcome(self._clock(), "up-to-date", str(self.current_version()))
        worst = min(outcomes, key=lambda o: _SEVERITY.index(o.result))
        return CheckOutcome(self._clock(), worst.result, str(self.current_version()),
                            "; ".join(o.detail for o in outcomes if o.detail),
                            [r for o in outcomes for r in o.reports])

    # --- rounds --------------------------------------------------------------------------------

    async def round(self) -> CheckOutcome:
        """Ask every watcher once and apply what they propose; record the outcome. Never raises for
        a failed check or a failed upgrade (RestartNeeded and cancellation pass through)."""
        outcomes: list[CheckOutcome] = []
        for kind, watcher in self._watchers:
            # a publisher-driven node applies the versions above its own one at a time, in order
            while not self._stop_requested:
                try:
                    event = await watcher.check()
                except Exception as exc:  # the hub is down, answers garbage...: the next round retries
                    log.error("check failed", exc_info=not isinstance(exc, ZosUpgradeError),
                              extra={"watcher": kind, "error": f"{type(exc).__name__}: {exc}"})
                    outcomes.append(CheckOutcome(self._clock(), "error", str(self.current_version()),
                                                 f"{kind} check: {type(exc).__name__}: {exc}"))
                    break
                if event is None:
                    break
                outcome = await self._apply(kind, event)
                outcomes.append(outcome)
                if outcome.failed:
                    break  # not confirmed: proposed again next round, never skipped over
                watcher.confirm(self._confirmation(kind, event))
                if kind != "publisher":
                    break
                if self._fresh_install:  # installed: from now on, the configured pace
                    self._fresh_install = False
                    self._replace_publisher_watcher()
        return self.record(self._merge(outcomes))

    def _replace_publisher_watcher(self) -> None:
        factory = self.parts.publisher_watcher
        assert factory is not None
        fresh = factory(self.current_version(), self.parts.jump_to_latest)
        self._watchers = [(k, fresh if k == "publisher" else w) for k, w in self._watchers]

    async def _apply(self, kind: str, event: Any) -> CheckOutcome:
        if kind == "bins":
            return await self.apply_bins(event)
        if kind == "publisher":
            return await self.apply_release(event)
        return await self.apply_boot(event)

    @staticmethod
    def _confirmation(kind: str, event: Any) -> Any:
        if kind == "bins":
            return event.all  # what the repository holds and the node now has
        return _version_of(event)

    def record(self, outcome: CheckOutcome) -> CheckOutcome:
        """Remember the outcome and write ``status.json`` for ``zos-upgrade status``."""
        self.last = outcome
        self.metrics.check("error" if outcome.result == "error" else "ok")
        if self.state_dir is not None:
            from zos_upgrade.node.state import DaemonState, write_state

            state = DaemonState(
                updated=self._clock(), pid=os.getpid(), source=self.source or None,
                current_version=outcome.version, last_check=outcome.at,
                last_result=outcome.result,  # type: ignore[arg-type]
                last_error=(outcome.detail or None) if outcome.failed else None,
                last_upgrade=self.last_upgrade,
            )
            try:
                write_state(self.state_dir, state)
            except (OSError, ZosUpgradeError) as exc:
                log.error("cannot write daemon state", extra={"error": str(exc)})
        log.info("check done", extra={"result": outcome.result, "version": outcome.version,
                                      "detail": outcome.detail})
        return outcome

    # --- the loop ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM: stop now if idle; else let the transaction finish (or roll back) first."""
        if not self._stop_requested:
            log.info("stop requested", extra={"in_transaction": self._busy})
        self._stop_requested = True
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
            with self._critical():
                await self.start_up()
            failures = 0
            while not self._stop_requested:
                outcome = await self.round()
                if once:
                    return EXIT_FAILED if outcome.failed else EXIT_OK
                failures = failures + 1 if outcome.failed else 0
                if self._stop_requested:
                    break
                await self._sleep(self._delay(failures))
            log.info("stopped")
            return EXIT_OK
        except asyncio.CancelledError:
            if self._stop_requested:
                log.info("stopped by signal")
                return EXIT_OK
            raise


# --- the process ---------------------------------------------------------------------------------


def build_parts(config: Config) -> NodeParts:
    """The real layers, wired from the config (imported here so ``--help`` stays fast)."""
    from zos_upgrade.daemon_wiring import build

    return build(config)


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()


def _source_name(config: Config) -> str:
    src = config.source
    return src.publisher if src.publisher else f"hub {src.hub} {src.flist}"


async def _run(config: Config, *, once: bool, parts: NodeParts | None, sleep: Sleep) -> int:
    metrics = start_metrics(config.metrics.enabled, config.metrics.host, config.metrics.port)
    try:
        parts = parts or build_parts(config)
    except BaseException:
        metrics.close()
        raise
    daemon = Daemon(parts, state_dir=config.state_dir, source=_source_name(config),
                    interval=config.source.interval, jitter=config.source.jitter, metrics=metrics,
                    sleep=sleep)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        return await daemon.run(once=once)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await parts.aclose()
        metrics.close()


def run_daemon(config: Config, *, once: bool = False, parts: NodeParts | None = None,
               sleep: Sleep = asyncio.sleep) -> int:
    """Hold the node's lock and run the daemon; the process exit code (EXIT_*)."""
    from zos_upgrade.upgrade.errors import RestartNeeded

    lock = DaemonLock(config.state_dir)
    lock.acquire()
    log.info("daemon started", extra={"root": str(config.root), "state_dir": str(config.state_dir),
                                      "source": _source_name(config), "once": once})
    try:
        return asyncio.run(_run(config, once=once, parts=parts, sleep=sleep))
    except RestartNeeded as exc:
        log.warning("restart needed: the upgrader replaced its own program",
                    extra={"exit": EXIT_RESTART, "detail": str(exc)})
        return EXIT_RESTART
    finally:
        lock.release()
        _flush_logs()
