"""``zos-upgrade rollback``: the boot release back to the previously installed one, without a download.

The transaction, what is kept for it and which hooks run are ``upgrade/rollback.py``'s. This module
takes the node's lock (like ``recover``: never beside a daemon transaction), names releases as the
daemon's failed-release memory does, and says what happened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from zos_upgrade.errors import ZosUpgradeError

if TYPE_CHECKING:
    from zos_upgrade.config import Config
    from zos_upgrade.upgrade.report import UpgradeReport

__all__ = ["EXIT_RESTART", "command"]

DEFAULT_CONFIG = Path("/etc/zos-upgrade.toml")
EXIT_RESTART = 75  # the daemon's code for "the upgrader replaced itself": the next start finishes


@click.command(name="rollback")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
              type=click.Path(path_type=Path, dir_okay=False), help="The daemon's TOML config file.")
@click.pass_context
def command(ctx: click.Context, config_path: Path) -> None:
    """Put the node back on the boot release installed before the current one.

    \b
    A full transaction (journal, probation, rolled back itself on failure) from the previous
    release's manifest, flist file and cached blocks, kept until the next commit: no download.
    The release rolled back from is then held like a failed release: the daemon does not move
    forward to it again until `zos-upgrade clear-failed VERSION`. Its own `rollback` hook, if it
    ships one, runs instead of the forward hooks. Run it again to go back to that release.
    Takes the node's lock: stop the daemon first, start it again afterwards.

    \b
    Example:
      systemctl stop zos-upgrade && zos-upgrade rollback --config /etc/zos-upgrade.toml

    \b
    Exit codes:
      0   rolled back
      1   refused or failed: no previous release, its flist file is not kept, the daemon runs,
          or the rollback failed and the node is still on the release it was on
      2   usage error
      75  the previous release's upgrader was installed; start the daemon to finish the rollback
    """
    from zos_upgrade.config import load_config
    from zos_upgrade.lock import DaemonLock
    from zos_upgrade.upgrade.errors import RestartNeeded

    config = load_config(config_path)
    lock = DaemonLock(config.state_dir)
    lock.acquire()
    try:
        report = asyncio.run(_rollback(config))
    except RestartNeeded as exc:
        click.echo(f"rollback waits for the restarted upgrader: {exc}; start the daemon to finish it",
                   err=True)
        ctx.exit(EXIT_RESTART)
    finally:
        lock.release()
    click.echo(f"rolled back from {report.from_version} to {report.to_version}: "
               f"{report.files_added} file(s) added, {report.files_replaced} replaced, "
               f"{report.files_removed} removed; {len(report.services_restarted)} service(s) restarted; "
               f"{report.bytes_downloaded} bytes downloaded")
    click.echo(f"release {report.from_version} is held: the daemon does not apply it again until "
               f"`zos-upgrade clear-failed {report.from_version}`")


async def _rollback(config: Config) -> UpgradeReport:
    from zos_upgrade.daemon.memory import installed_identity
    from zos_upgrade.daemon.wiring import make_supervisor, make_upgrader
    from zos_upgrade.upgrade.manifest import Manifest

    publisher = config.source.publisher is not None
    # where the blocks live if the cache lacks one (it should not): the hub the daemon follows
    hub = config.source.hub
    block_store = None if publisher or hub is None else hub.rstrip("/") + "/blocks"

    def identify(manifest: Manifest, flist: Path) -> str:
        return installed_identity(manifest, flist, publisher=publisher)

    supervisor = make_supervisor(config)
    try:
        upgrader = make_upgrader(config, supervisor)
        if upgrader.journal.path.exists():
            raise ZosUpgradeError(
                f"{upgrader.journal.path}: an unfinished transaction exists; start the daemon (it finishes "
                "or undoes it at start-up), stop it, then run rollback again")
        return await upgrader.rollback(identify, block_store=block_store)
    finally:
        await supervisor.aclose()
