"""The daemon's Prometheus metrics, or nothing at all.

``prometheus-client`` is an optional extra: it is imported only when ``[metrics] enabled`` is set,
so a node without it runs the daemon unchanged. The daemon records through :class:`Metrics`
either way; :class:`NullMetrics` simply forgets.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from zos_upgrade.config import check_loopback
from zos_upgrade.errors import ZosUpgradeError

__all__ = ["Metrics", "NullMetrics", "PrometheusMetrics", "start_metrics"]

log = logging.getLogger(__name__)


class Metrics(Protocol):
    def check(self, result: str) -> None:
        """One check of the source finished (``ok``, ``error``, or ``held``: a release that failed here
        before was not applied again)."""

    def held(self, releases: int) -> None:
        """How many failed releases the daemon holds back (``failed-releases.json``)."""

    def upgrade(self, result: str, *, duration: float, bytes_downloaded: int = 0,
                blocks_reused: int = 0) -> None:
        """One transaction finished: ``success``, ``rolled_back`` or ``failed``."""

    def close(self) -> None:
        """Stop serving."""


class NullMetrics:
    """Metrics disabled."""

    def check(self, result: str) -> None:
        pass

    def held(self, releases: int) -> None:
        pass

    def upgrade(self, result: str, *, duration: float, bytes_downloaded: int = 0,
                blocks_reused: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


class PrometheusMetrics:
    """Counters and a histogram in a private registry, served on a loopback port."""

    def __init__(self, host: str, port: int) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise ZosUpgradeError(
                "[metrics] enabled = true needs the optional dependency prometheus-client "
                "(pip install 'zos-upgrade[metrics]')"
            ) from exc
        self.registry = prom.CollectorRegistry()
        self._checks = prom.Counter("zos_upgrade_checks", "Checks of the release source, by result",
                                    ["result"], registry=self.registry)
        self._upgrades = prom.Counter("zos_upgrade_upgrades", "Upgrade transactions, by result",
                                      ["result"], registry=self.registry)
        self._bytes = prom.Counter("zos_upgrade_downloaded_bytes", "Bytes of blocks downloaded",
                                   registry=self.registry)
        self._reused = prom.Counter("zos_upgrade_blocks_reused", "Blocks taken from the local cache",
                                    registry=self.registry)
        self._held = prom.Gauge("zos_upgrade_failed_releases_held",
                                "Releases that failed here and are not applied again until cleared",
                                registry=self.registry)
        self._duration = prom.Histogram(
            "zos_upgrade_upgrade_duration_seconds", "Duration of upgrade transactions",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800), registry=self.registry)
        self._server: Any = None
        try:
            self._server, _thread = prom.start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ZosUpgradeError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        log.info("metrics served", extra={"host": host, "port": port})

    def check(self, result: str) -> None:
        self._checks.labels(result=result).inc()

    def held(self, releases: int) -> None:
        self._held.set(releases)

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


def start_metrics(enabled: bool, host: str, port: int) -> Metrics:
    """The metrics sink the config asks for; refuses to listen anywhere but on loopback."""
    if not enabled:
        return NullMetrics()
    check_loopback(host, "metrics.host", "metrics")
    return PrometheusMetrics(host, port)
