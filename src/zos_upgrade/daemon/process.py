"""The daemon as a process: the node's lock, signals, metrics, the exit code (``zos-upgrade daemon``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from zos_upgrade.config import Config
from zos_upgrade.daemon.loop import EXIT_RESTART, Daemon, NodeParts, Sleep
from zos_upgrade.lock import DaemonLock
from zos_upgrade.metrics import start_metrics

__all__ = ["build_parts", "run_daemon"]

log = logging.getLogger(__name__)


def build_parts(config: Config, config_file: Path | None = None) -> NodeParts:
    """The real layers, wired from the config (imported here so ``--help`` stays fast)."""
    from zos_upgrade.daemon.wiring import build

    return build(config, config_file=config_file)


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()


def _source_name(config: Config) -> str:
    src = config.source
    return src.publisher if src.publisher else f"hub {src.hub} {src.flist}"


async def _run(config: Config, *, once: bool, parts: NodeParts | None, sleep: Sleep,
               config_file: Path | None) -> int:
    mc = config.metrics
    socket_path = config.node_path(mc.socket) if mc.socket else None
    metrics = start_metrics(mc.enabled, mc.host, mc.port, allow_remote=mc.allow_remote,
                            socket_path=socket_path)
    try:
        parts = parts or build_parts(config, config_file)
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
               sleep: Sleep = asyncio.sleep, config_file: Path | None = None) -> int:
    """Hold the node's lock and run the daemon; the process exit code (EXIT_*)."""
    from zos_upgrade import __version__
    from zos_upgrade.upgrade import RestartNeeded

    lock = DaemonLock(config.state_dir)
    lock.acquire()
    log.info("daemon started", extra={"root": str(config.root), "state_dir": str(config.state_dir),
                                      "source": _source_name(config), "once": once, "version": __version__})
    try:
        return asyncio.run(_run(config, once=once, parts=parts, sleep=sleep, config_file=config_file))
    except RestartNeeded as exc:
        log.warning("restart needed: the upgrader replaced its own program",
                    extra={"exit": EXIT_RESTART, "detail": str(exc)})
        return EXIT_RESTART
    finally:
        lock.release()
        _flush_logs()
