"""``zos-upgrade recover --from-backup``: the way out of a journal that cannot be read.

The daemon recovers a readable journal by itself (rolls back or forward); a truncated or corrupt
``journal.json`` blocks every start instead. This command puts the node back on its last committed
release from the backup (``upgrade/restore.py``), or refuses, changing nothing, and says why. It
takes the node's lock: stop the daemon first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from zos_upgrade.config import Config
    from zos_upgrade.upgrade.restore import RestoreReport

__all__ = ["command"]


@click.command(name="recover")
@click.option("--from-backup", "from_backup", is_flag=True,
              help="Restore the last committed release from the backup (for an unreadable journal).")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The daemon's TOML config file.")
def command(from_backup: bool, config_path: Path) -> None:
    """Put the node back on its last committed release when journal.json cannot be read.

    \b
    Checks first, then: files of the installed manifests restored from the backup, files the
    interrupted transaction added removed, the installed services restarted, the unreadable
    journal kept beside as journal.json.unreadable-<time>. Refuses (exit 1, nothing changed) when
    the journal is readable (start the daemon: it recovers it), when a committed file is neither
    on the node nor in the backup, or when the supervisor does not answer.
    """
    if not from_backup:
        raise click.UsageError("say --from-backup (the only recovery this command does; the daemon "
                               "recovers a readable journal itself)")
    from zos_upgrade.config import load_config
    from zos_upgrade.lock import DaemonLock

    config = load_config(config_path)
    lock = DaemonLock(config.state_dir)
    lock.acquire()
    try:
        report = asyncio.run(_restore(config))
    finally:
        lock.release()
    click.echo(f"restored the committed release: {len(report.restore)} file(s) from the backup, "
               f"{len(report.make_dirs)} directory(ies) made, {len(report.remove)} added file(s) removed, "
               f"{len(report.services)} service(s) restarted")
    click.echo(f"the unreadable journal is kept as {report.kept_journal}")


async def _restore(config: Config) -> RestoreReport:
    from zos_upgrade.daemon.wiring import make_supervisor, make_upgrader

    supervisor = make_supervisor(config)
    try:
        return await make_upgrader(config, supervisor).restore_from_backup()
    finally:
        await supervisor.aclose()
