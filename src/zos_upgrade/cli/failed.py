"""``zos-upgrade clear-failed [VERSION]``: let the daemon try a release that failed here again.

The daemon remembers every release that failed in its own hooks or services
(``<state>/failed-releases.json``) and never applies it twice; this command forgets one (by
version or identity) or all of them. A running daemon reads the file before each transaction, so
no restart is needed. It writes nothing but that file.
"""

from __future__ import annotations

from pathlib import Path

import click

from zos_upgrade.cli._common import locate_node
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.node.failed import FailedReleases, FailedReleasesError

__all__ = ["command"]


@click.command(name="clear-failed")
@click.argument("version", required=False)
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False),
              help="Daemon config file: the state directory comes from it.")
@click.option("--root", "root", type=click.Path(path_type=Path, file_okay=False),
              help="Node root (default /); the state directory is the default one under it.")
def command(version: str | None, config: Path | None, root: Path | None) -> None:
    """Forget the failed release VERSION (a version or an id such as md5:...), or every one.

    The daemon applies it again at its next round (if it is still the release to apply).
    """
    _, state_dir = locate_node(config, root)
    store = FailedReleases(state_dir)
    if version is None:
        try:
            store.load()
        except FailedReleasesError:  # what the daemon refuses to read: say it was removed, not "none"
            store.clear()
            click.echo(f"removed the unreadable {store.path}: no release is held now")
            return
        removed = store.clear()
    else:
        removed = store.clear(version)
        if not removed:
            held = ", ".join(r.version or r.id for r in store.load()) or "none"
            raise ZosUpgradeError(f"no failed release {version!r} is held in {store.path} (held: {held})")
    for entry in removed:
        click.echo(f"cleared {entry.version or entry.id} ({entry.id}, failed at {entry.step})")
    if not removed:
        click.echo(f"no failed releases held in {store.path}")
