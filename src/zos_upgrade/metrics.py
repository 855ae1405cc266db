"""The daemon's Prometheus metrics, or nothing at all.

``prometheus-client`` is an optional extra: it is imported only when ``[metrics] enabled`` is set,
so a node without it runs the daemon unchanged. The daemon records through :class:`Metrics`
either way; :class:`NullMetrics` simply forgets.

Every ``result`` label is a word ``zos-upgrade status`` prints (``up-to-date``, ``upgraded``,
``held``, ``paused``, ``rolled-back``, ``failed``, ``rollback-incomplete``, ``error``), so a dashboard
and the node say the same thing. Served on loopback by default; on another address or a unix socket only
when the config says so (``[metrics] allow_remote`` / ``socket``, checked in :mod:`zos_upgrade.config`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socketserver
import threading
from pathlib import Path
from typing import Any, Protocol

from zos_upgrade.config import check_loopback
from zos_upgrade.errors import ZosUpgradeError

__all__ = ["RESULTS", "Metrics", "NullMetrics", "PrometheusMetrics", "start_metrics"]

log = logging.getLogger(__name__)

# the status words (node.state.CheckResult): every one is exported, so a result that never happened
# reads 0 instead of missing
RESULTS = ("up-to-date", "upgraded", "held", "paused", "waiting", "rolled-back", "failed",
           "rollback-incomplete", "error")


class Metrics(Protocol):
    def check(self, result: str, *, at: float = 0.0, installed: str | None = None,
              channel: str | None = None, update_available: bool = False) -> None:
        """One round finished with ``result`` (a status word) at unix time ``at``; the node runs
        ``installed``, its channel offers ``channel`` (newer than installed: ``update_available``)."""

    def installed(self, version: str, channel: str | None) -> None:
        """What the node runs and what its channel offers (at start-up; every round updates it too)."""

    def held(self, releases: int) -> None:
        """How many failed releases the daemon holds back (``failed-releases.json``)."""

    def running(self, in_progress: bool) -> None:
        """A transaction started (True) or ended (False)."""

    def upgrade(self, result: str, *, duration: float, bytes_downloaded: int = 0,
                blocks_reused: int = 0) -> None:
        """One transaction finished with ``result`` (a status word), failed ones included."""

    def close(self) -> None:
        """Stop serving."""


class NullMetrics:
    """Metrics disabled."""

    def check(self, result: str, *, at: float = 0.0, installed: str | None = None,
              channel: str | None = None, update_available: bool = False) -> None:
        pass

    def installed(self, version: str, channel: str | None) -> None:
        pass

    def held(self, releases: int) -> None:
        pass

    def running(self, in_progress: bool) -> None:
        pass

    def upgrade(self, result: str, *, duration: float, bytes_downloaded: int = 0,
                blocks_reused: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


class _UnixMetricsServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class PrometheusMetrics:
    """Counters, gauges and a histogram in a private registry, served on ``host:port`` or a unix socket."""

    def __init__(self, host: str, port: int, *, socket_path: Path | None = None) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise ZosUpgradeError(
                "[metrics] enabled = true needs the optional dependency prometheus-client "
                "(pip install 'zos-upgrade[metrics]')"
            ) from exc
        reg = self.registry = prom.CollectorRegistry()
        self._checks = prom.Counter("zos_upgrade_checks", "Rounds of the daemon, by result",
                                    ["result"], registry=reg)
        self._upgrades = prom.Counter("zos_upgrade_upgrades", "Transactions, by result", ["result"],
                                      registry=reg)
        self._bytes = prom.Counter("zos_upgrade_downloaded_bytes",
                                   "Bytes of blocks downloaded, by failed transactions too", registry=reg)
        self._reused = prom.Counter("zos_upgrade_blocks_reused", "Blocks taken from the local cache",
                                    registry=reg)
        self._held = prom.Gauge("zos_upgrade_failed_releases_held",
                                "Releases that failed here and are not applied again until cleared",
                                registry=reg)
        self._duration = prom.Histogram(
            "zos_upgrade_upgrade_duration_seconds", "Duration of upgrade transactions",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800), registry=reg)
        self._installed = prom.Info("zos_upgrade_installed", "The release the node runs", registry=reg)
        self._last_check = prom.Gauge("zos_upgrade_last_check_timestamp_seconds",
                                      "Unix time the last round ended", registry=reg)
        self._last_result = prom.Gauge("zos_upgrade_last_result",
                                       "1 for the result of the last round (a status word), 0 for the others",
                                       ["result"], registry=reg)
        self._available = prom.Gauge("zos_upgrade_update_available",
                                     "1 when the channel offers a release newer than the installed one",
                                     registry=reg)
        self._in_progress = prom.Gauge("zos_upgrade_transaction_in_progress",
                                       "1 while a transaction runs", registry=reg)
        for word in RESULTS:
            self._last_result.labels(result=word).set(0)
        self._server: Any = None
        self._socket_path = socket_path
        if socket_path is None:
            self._serve_tcp(prom, host, port)
        else:
            self._serve_unix(prom, socket_path)

    def _serve_tcp(self, prom: Any, host: str, port: int) -> None:
        try:
            self._server, _thread = prom.start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ZosUpgradeError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        log.info("metrics served", extra={"host": host, "port": port})

    def _serve_unix(self, prom: Any, path: Path) -> None:
        # a socket left by a daemon that died: the node lock says no other daemon runs, so it is ours
        with contextlib.suppress(FileNotFoundError):
            if path.is_socket():
                path.unlink()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            server = _UnixMetricsServer(str(path), prom.MetricsHandler.factory(self.registry))
        except OSError as exc:
            raise ZosUpgradeError(
                f"cannot serve metrics on unix socket {path}: {exc.strerror or exc}") from exc
        self._server = server
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics served", extra={"socket": str(path)})

    def check(self, result: str, *, at: float = 0.0, installed: str | None = None,
              channel: str | None = None, update_available: bool = False) -> None:
        self._checks.labels(result=result).inc()
        for word in RESULTS:
            self._last_result.labels(result=word).set(1 if word == result else 0)
        if at:
            self._last_check.set(at)
        self.installed(installed or "", channel)
        self._available.set(1 if update_available else 0)

    def installed(self, version: str, channel: str | None) -> None:
        self._installed.info({"version": version, "channel": channel or ""})

    def held(self, releases: int) -> None:
        self._held.set(releases)

    def running(self, in_progress: bool) -> None:
        self._in_progress.set(1 if in_progress else 0)

    def upgrade(self, result: str, *, duration: float, bytes_downloaded: int = 0,
                blocks_reused: int = 0) -> None:
        self._upgrades.labels(result=result).inc()
        self._duration.observe(max(0.0, duration))
        self._bytes.inc(max(0, bytes_downloaded))
        self._reused.inc(max(0, blocks_reused))

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            if self._socket_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._socket_path)


def start_metrics(enabled: bool, host: str, port: int, *, allow_remote: bool = False,
                  socket_path: Path | None = None) -> Metrics:
    """The metrics sink the config asks for; loopback only unless ``allow_remote`` or a socket."""
    if not enabled:
        return NullMetrics()
    if socket_path is None and not allow_remote:
        check_loopback(host, "metrics.host", "metrics")
    return PrometheusMetrics(host, port, socket_path=socket_path)
