"""The upgrade loop that runs on a node (``zos-upgrade daemon``).

Start-up, in this order: take the node's lock, sweep stale mounts, recover an unfinished
transaction, rebuild the boot files from the manifests when ``/tmp`` lost them, then bring the bins
in line with the bins repository. After that the daemon follows its source — a hub (the boot flist
link and the bins repository) or a release server — and applies what is due, one transaction at a
time. A watcher event is confirmed only after its transaction succeeded, so a failed upgrade is
retried later instead of forgotten. A node without boot files is simply at version 0.0.0: its
first event installs the boot flist and writes the boot files (the first install).

The policy lives in :class:`Daemon`; it talks to the layers below through the small protocols
declared here, and :func:`build_parts` wires the real ones from the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from zos_upgrade.config import Config
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.lock import DaemonLock
from zos_upgrade.metrics import Metrics, NullMetrics, start_metrics
from zos_upgrade.upgrade.errors import RestartNeeded
from zos_upgrade.versions import ZERO, Version

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


async def _settle(value: Any) -> Any:
    """The result of a call that may be sync or async (the lower layers choose)."""
    if inspect.isawaitable(value):
        return await value
    return value


# --- what the daemon needs from the layers below -------------------------------------------------


class UpgraderPort(Protocol):
    def recover(self) -> Any: ...
    def upgrade(self, from_event: Any, to_event: Any) -> Any: ...
    def upgrade_release(self, release: Any, version: Version) -> Any: ...
    def install_binary(self, repo_flist: Any) -> Any: ...
    def uninstall_binary(self, fqdn: str) -> Any: ...
    def installed_boot(self) -> Any: ...
    def installed_bins(self) -> Any: ...
    def sync_boot_files(self) -> Any: ...


class WatcherPort(Protocol):
    def watch(self) -> AsyncIterator[Any]: ...
    def confirm(self, value: Any) -> Any: ...


@dataclass
class NodeParts:
    """Everything the daemon drives, built once per process (see :func:`build_parts`)."""

    upgrader: UpgraderPort
    flister: Any
    boot: Any
    # hub mode
    boot_watcher: Callable[[Version], WatcherPort] | None = None
    check_boot: Callable[[Version], Awaitable[Any | None]] | None = None
    bins_watcher: Callable[[Mapping[str, Any]], Any] | None = None
    # publisher mode
    publisher: Any = None
    publisher_watcher: Callable[[Version], WatcherPort] | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()


@dataclass
class CheckOutcome:
    """What one check did: the line ``zos-upgrade status`` shows."""

    at: float
    result: str  # up-to-date | upgraded | rolled-back | failed | check-failed
    version: str
    detail: str = ""
    reports: list[Any] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.result in ("rolled-back", "failed", "error")


@dataclass
class _Applied:
    """How one transaction ended."""

    result: str  # upgraded | rolled-back | failed
    report: Any
    detail: str

    @property
    def ok(self) -> bool:
        return self.result == "upgraded"


def _report_numbers(report: Any) -> tuple[int, int]:
    return int(getattr(report, "bytes_downloaded", 0) or 0), int(getattr(report, "blocks_from_cache", 0) or 0)


def _failure_result(exc: BaseException) -> tuple[str, str]:
    """(result, detail) of a transaction that raised."""
    rolled_back = bool(getattr(exc, "rolled_back", False))
    step = getattr(exc, "step", None)
    reason = getattr(exc, "reason", None) or str(exc)
    detail = f"{reason} (at step {step})" if step else str(reason)
    return ("rolled-back" if rolled_back else "failed"), detail


def _event_version(event: Any) -> Version:
    try:
        version = event.version()
    except Exception:  # a garbled boot file must not crash the daemon (SPEC 12)
        return ZERO
    return version if isinstance(version, Version) else Version.parse(str(version))


def _fqdn(item: Any) -> str:
    if isinstance(item, str):
        return item
    fqdn = getattr(item, "fqdn", None)
    return str(fqdn() if callable(fqdn) else fqdn)


class Daemon:
    """The policy: what to apply, in which order, what to confirm, what to record."""

    def __init__(
        self,
        parts: NodeParts,
        *,
        state_dir: Path | None = None,
        source: str = "",
        jump_to_latest: bool = False,
        metrics: Metrics | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        retry_delay: float = 5.0,
    ) -> None:
        self.parts = parts
        self.state_dir = state_dir
        self.source = source
        self.jump_to_latest = jump_to_latest
        self.metrics = metrics or NullMetrics()
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._retry_delay = retry_delay
        self._busy = False
        self._stop_requested = False
        self._main: asyncio.Task[Any] | None = None
        self.last: CheckOutcome | None = None
        self.last_upgrade: UpgradeRecord | None = None

    # --- start-up ----------------------------------------------------------------------------

    async def start_up(self) -> None:
        """Sweep, recover, and make the boot files agree with the manifests."""
        p = self.parts
        if p.flister is not None and hasattr(p.flister, "sweep"):
            await _settle(p.flister.sweep())
        recovered = await _settle(p.upgrader.recover())
        if recovered:
            log.warning("unfinished transaction recovered", extra={"recovery": str(recovered)})
        await _settle(p.upgrader.sync_boot_files())

    def current_event(self) -> Any | None:
        """The boot flist the node runs, or None on a node that was never installed."""
        boot = self.parts.boot
        method = str(boot.detect_boot_method()).lower()
        if "flist" not in method:
            return None
        try:
            return boot.current()
        except ZosUpgradeError as exc:
            log.error("boot files unreadable, treating node as 0.0.0", extra={"error": str(exc)})
            return None

    def current_version(self) -> Version:
        event = self.current_event()
        return ZERO if event is None else _event_version(event)

    # --- one transaction -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _critical(self) -> Iterator[None]:
        """A stretch SIGTERM must not cut: it is let finish (or roll back) before the daemon exits."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    async def _transaction(self, what: str, call: Callable[[], Any], *, to_version: str) -> _Applied:
        """Run one transaction and classify how it ended. RestartNeeded passes through."""
        from zos_upgrade.node.state import UpgradeRecord

        started, start = self._clock(), self._monotonic()
        from_version = str(self.current_version())
        try:
            with self._critical():
                report = await _settle(call())
        except Exception as exc:
            if isinstance(exc, RestartNeeded):
                raise
            result, detail = _failure_result(exc)
            duration = self._monotonic() - start
            self.metrics.upgrade(result.replace("-", "_"), duration=duration)
            self.last_upgrade = UpgradeRecord(from_version=from_version, to_version=to_version,
                                              started=started, duration=duration)
            log.error("transaction did not apply", extra={"what": what, "result": result, "detail": detail})
            return _Applied(result, None, f"{what}: {detail}")
        duration = self._monotonic() - start
        downloaded, reused = _report_numbers(report)
        self.metrics.upgrade("success", duration=duration, bytes_downloaded=downloaded, blocks_reused=reused)
        self.last_upgrade = UpgradeRecord(from_version=from_version, to_version=to_version,
                                          started=started, duration=duration,
                                          bytes_downloaded=downloaded)
        log.info("transaction applied", extra={"what": what, "bytes_downloaded": downloaded,
                                               "blocks_reused": reused})
        return _Applied("upgraded", report, "")

    # --- hub mode: boot flist ------------------------------------------------------------------

    async def apply_boot(self, event: Any) -> CheckOutcome:
        """Upgrade (or first-install) the boot flist to ``event``."""
        current = self.current_event()
        target = _event_version(event)
        what = f"boot {'install' if current is None else 'upgrade'} to {target}"
        done = await self._transaction(what, partial(self.parts.upgrader.upgrade, current, event),
                                       to_version=str(target))
        if done.ok:
            return self._result("upgraded", str(target), reports=[done.report])
        return self._result(done.result, str(self.current_version()), done.detail)

    # --- hub mode: bins ------------------------------------------------------------------------

    async def sync_bins(self, to_add: Sequence[Any], to_del: Sequence[Any]) -> CheckOutcome:
        """Install what the bins repository added or changed, uninstall what it dropped."""
        reports: list[Any] = []
        failures: list[str] = []
        worst = "upgraded"
        steps: list[tuple[str, Callable[[], Any]]] = []
        for item in to_add:
            steps.append((f"install {_fqdn(item)}", partial(self.parts.upgrader.install_binary, item)))
        for item in to_del:
            name = _fqdn(item)
            steps.append((f"uninstall {name}", partial(self.parts.upgrader.uninstall_binary, name)))
        for what, call in steps:
            if self._stop_requested:
                break
            done = await self._transaction(what, call, to_version=what)
            if done.ok:
                reports.append(done.report)
            else:
                failures.append(done.detail)
                worst = "failed" if done.result == "failed" or worst == "failed" else done.result
        version = str(self.current_version())
        if failures:
            return self._result(worst, version, "; ".join(failures), reports=reports)
        return self._result("upgraded" if reports else "up-to-date", version, reports=reports)

    def installed_bins(self) -> Mapping[str, Any]:
        bins = self.parts.upgrader.installed_bins()
        return dict(bins or {})

    # --- publisher mode ------------------------------------------------------------------------

    async def apply_release(self, version: Version, release: Any) -> CheckOutcome:
        """Apply one release the publisher returned (its signature already verified)."""
        done = await self._transaction(
            f"release {version}", partial(self.parts.upgrader.upgrade_release, release, version),
            to_version=str(version))
        if not done.ok:
            return self._result(done.result, str(self.current_version()), done.detail)
        return self._result("upgraded", str(self.current_version()), reports=[done.report])

    async def apply_published(self) -> CheckOutcome:
        """Apply the releases above ours: one at a time in order, or straight to latest."""
        pub = self.parts.publisher
        current = self.current_version()
        if self.jump_to_latest:
            latest = await pub.latest()
            due = [latest] if latest > current else []
        else:
            due = sorted(v for v in await pub.list() if v > current)
        outcomes: list[CheckOutcome] = []
        for version in due:
            if self._stop_requested:
                break
            try:
                release = await pub.get(version)
            except ZosUpgradeError as exc:
                log.error("release refused", extra={"version": str(version), "error": str(exc)})
                self.metrics.upgrade("failed", duration=0.0)
                outcomes.append(self._result("failed", str(self.current_version()),
                                             f"release {version} refused: {exc}"))
                break
            outcome = await self.apply_release(version, release)
            outcomes.append(outcome)
            if outcome.failed:
                break  # never skip a failed version to apply the next one over it
        return _merge(outcomes, self._result("up-to-date", str(current)))

    # --- checks --------------------------------------------------------------------------------

    def _result(self, result: str, version: str, detail: str = "",
                reports: list[Any] | None = None) -> CheckOutcome:
        return CheckOutcome(at=self._clock(), result=result, version=version, detail=detail,
                           reports=list(reports or []))

    def record(self, outcome: CheckOutcome) -> CheckOutcome:
        """Remember and persist the outcome of a check for ``zos-upgrade status``."""
        self.last = outcome
        self.metrics.check("error" if outcome.result == "error" else "ok")
        if self.state_dir is not None:
            from zos_upgrade.node.state import DaemonState, write_state

            state = DaemonState(
                updated=self._clock(), pid=os.getpid(), source=self.source or None,
                current_version=outcome.version, last_check=outcome.at,
                last_result=outcome.result,  # type: ignore[arg-type]
                last_error=outcome.detail or None if outcome.failed else None,
                last_upgrade=self.last_upgrade,
            )
            try:
                write_state(self.state_dir, state)
            except (OSError, ZosUpgradeError) as exc:
                log.error("cannot write daemon state", extra={"error": str(exc)})
        log.info("check done", extra={"result": outcome.result, "version": outcome.version,
                                      "detail": outcome.detail})
        return outcome

    async def check_once(self) -> CheckOutcome:
        """One check of the source; apply what is due. Never raises for a failed check."""
        try:
            outcomes = await self._check_once()
        except Exception as exc:
            if isinstance(exc, RestartNeeded):
                raise
            log.error("check failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return self.record(self._result("error", str(self.current_version()),
                                            f"{type(exc).__name__}: {exc}"))
        return self.record(_merge(outcomes, self._result("up-to-date", str(self.current_version()))))

    async def _check_once(self) -> list[CheckOutcome]:
        p = self.parts
        outcomes: list[CheckOutcome] = []
        if p.publisher is not None:
            outcomes.append(await self.apply_published())
            return outcomes
        if p.check_boot is not None:
            event = await p.check_boot(self.current_version())
            if event is not None:
                outcomes.append(await self.apply_boot(event))
        if p.bins_watcher is not None:
            watcher = p.bins_watcher(self.installed_bins())
            _all, to_add, to_del = await _settle(watcher.diff())
            if to_add or to_del:
                outcomes.append(await self.sync_bins(list(to_add), list(to_del)))
        return outcomes

    # --- the loop ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM: stop now if idle; else let the transaction finish (or roll back) first."""
        self._stop_requested = True
        if not self._busy and self._main is not None:
            self._main.cancel()

    async def run(self, *, once: bool) -> int:
        """Start up, then check once or follow the source; the process exit code."""
        self._main = asyncio.current_task()
        try:
            with self._critical():
                await self.start_up()
            if once or self._stop_requested:
                outcome = await self.check_once()
                return EXIT_FAILED if outcome.failed else EXIT_OK
            # the start-up check: first install, bins by diff, anything published while we were down
            await self.check_once()
            await self._follow()
            return EXIT_OK
        except asyncio.CancelledError:
            if self._stop_requested:
                log.info("stopped by signal")
                return EXIT_OK
            raise

    async def _follow(self) -> None:
        """Consume the watchers' events, one transaction at a time, until stopped."""
        queue: asyncio.Queue[tuple[str, WatcherPort, Any]] = asyncio.Queue()
        feeders = [asyncio.create_task(self._feed(name, factory, queue))
                   for name, factory in self._watcher_factories()]
        try:
            while not self._stop_requested:
                kind, watcher, event = await queue.get()
                outcome = await self._handle(kind, event)
                if not outcome.failed:
                    await _settle(watcher.confirm(self._confirmation(kind, event)))
                self.record(outcome)
        finally:
            for task in feeders:
                task.cancel()
            for task in feeders:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _watcher_factories(self) -> list[tuple[str, Callable[[], WatcherPort]]]:
        p = self.parts
        out: list[tuple[str, Callable[[], WatcherPort]]] = []
        if p.publisher_watcher is not None:
            pw = p.publisher_watcher
            out.append(("publisher", lambda: pw(self.current_version())))
        if p.boot_watcher is not None:
            bw = p.boot_watcher
            out.append(("boot", lambda: bw(self.current_version())))
        if p.bins_watcher is not None:
            bins = p.bins_watcher
            out.append(("bins", lambda: bins(self.installed_bins())))
        return out

    async def _feed(self, kind: str, factory: Callable[[], WatcherPort],
                    queue: asyncio.Queue[tuple[str, WatcherPort, Any]]) -> None:
        """Run one watcher; its first check may fail (hub down): retry with backoff, forever."""
        attempt = 0
        while True:
            watcher = factory()
            try:
                async for event in watcher.watch():
                    attempt = 0
                    await queue.put((kind, watcher, event))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                delay = min(self._retry_delay * 2 ** (attempt - 1), 600.0)
                log.error("watcher failed, retrying", extra={"watcher": kind, "error": str(exc),
                                                             "retry_in": delay})
                self.record(self._result("error", str(self.current_version()),
                                         f"{kind}: {type(exc).__name__}: {exc}"))
                await self._sleep(delay)

    async def _handle(self, kind: str, event: Any) -> CheckOutcome:
        if kind == "boot":
            if _event_version(event) <= self.current_version():
                return self._result("up-to-date", str(self.current_version()))
            return await self.apply_boot(event)
        if kind == "bins":
            to_add, to_del = getattr(event, "to_add", ()), getattr(event, "to_del", ())
            return await self.sync_bins(list(to_add), list(to_del))
        if event.version <= self.current_version():
            return self._result("up-to-date", str(self.current_version()))
        return await self.apply_release(event.version, event.upgrade)

    def _confirmation(self, kind: str, event: Any) -> Any:
        if kind == "boot":
            return _event_version(event)
        if kind == "bins":
            return self.installed_bins()
        return event.version


def _merge(outcomes: list[CheckOutcome], idle: CheckOutcome) -> CheckOutcome:
    """One status line for a check that may have run several transactions: the worst wins."""
    if not outcomes:
        return idle
    order = ["error", "failed", "rolled-back", "upgraded", "up-to-date"]
    worst = min(outcomes, key=lambda o: order.index(o.result))
    details = "; ".join(o.detail for o in outcomes if o.detail)
    reports = [r for o in outcomes for r in o.reports]
    return CheckOutcome(at=worst.at, result=worst.result, version=outcomes[-1].version,
                       detail=details, reports=reports)


# --- wiring --------------------------------------------------------------------------------------


def build_parts(config: Config) -> NodeParts:
    """The real layers, wired from the config (imported here so ``--help`` stays fast)."""
    from zos_upgrade import daemon_wiring

    return daemon_wiring.build(config)


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()


async def _run(config: Config, *, once: bool, parts: NodeParts | None) -> int:
    metrics = start_metrics(config.metrics.enabled, config.metrics.host, config.metrics.port)
    parts = parts or build_parts(config)
    daemon = Daemon(parts, jump_to_latest=config.source.jump_to_latest, metrics=metrics)
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


def run_daemon(config: Config, *, once: bool = False, parts: NodeParts | None = None) -> int:
    """Hold the node's lock and run the daemon; the process exit code (EXIT_*)."""
    lock = DaemonLock(config.state_dir)
    lock.acquire()
    log.info("daemon started", extra={"root": str(config.root), "state_dir": str(config.state_dir),
                                      "once": once})
    try:
        return asyncio.run(_run(config, once=once, parts=parts))
    except RestartNeeded:
        log.warning("restart needed: the upgrader replaced its own program", extra={"exit": EXIT_RESTART})
        _flush_logs()
        return EXIT_RESTART
    finally:
        lock.release()
        _flush_logs()
