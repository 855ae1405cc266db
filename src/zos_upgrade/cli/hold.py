"""``zos-upgrade hold [VERSION]`` / ``unhold`` and ``pause`` / ``resume``: the operator's say on a node.

Each writes one small file, ``<state>/control.json`` (:mod:`zos_upgrade.node.control`), durably; a
running daemon reads it before every transaction, so no restart is needed: it honours the change at
its next round. ``zos-upgrade status`` shows both. None of them talks to the daemon, the network or
the supervisor, so each works on a node whose daemon is stopped or wedged.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from zos_upgrade.cli._common import locate_node
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.node.control import NodeControl
from zos_upgrade.versions import InvalidVersion, Version, parse_version

__all__ = ["commands"]

_EXIT_CODES = "Exit codes: 0 done (also when nothing was set), 1 the state file cannot be read or written, " \
              "2 usage error (e.g. VERSION is not semver)."


def _node_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option("--root", "root", type=click.Path(path_type=Path, file_okay=False),
                        help="Node root (default /); the state directory is the default one under it.")(func)
    return click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False),
                        help="Daemon config file: the state directory comes from it.")(func)


def _control(config: Path | None, root: Path | None) -> tuple[NodeControl, Path]:
    """The control file of the node ``--config`` / ``--root`` names; a root that is not there is
    refused (a typo must not create a state directory somewhere else)."""
    node_root, state_dir = locate_node(config, root)
    if not node_root.is_dir():
        raise ZosUpgradeError(f"node root {node_root} is not a directory")
    return NodeControl(state_dir), state_dir


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def _running_version(state_dir: Path) -> Version:
    """The boot release the node runs, from its install manifest (the truth the boot files mirror)."""
    from zos_upgrade.upgrade.manifest import ManifestStore

    manifest = ManifestStore(state_dir).load("boot")
    if manifest is None:
        raise ZosUpgradeError(f"no boot release is installed here (no manifest in {state_dir}/manifests): "
                              "say which VERSION to hold the node at")
    return parse_version(manifest.version)


def _version_argument(ctx: click.Context, param: click.Parameter, value: str | None) -> Version | None:
    if value is None:
        return None
    try:
        return parse_version(value)
    except InvalidVersion as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


@click.command(name="hold", epilog=_EXIT_CODES)
@click.argument("version", required=False, callback=_version_argument)
@_node_options
def hold(version: Version | None, config: Path | None, root: Path | None) -> None:
    """Pin the node: the daemon applies no boot release above VERSION (default: the running one).

    \b
    Examples:
      zos-upgrade hold --config /etc/zos-upgrade.toml          stay on what runs now
      zos-upgrade hold 1.2.0 --config /etc/zos-upgrade.toml    go up to 1.2.0, no further
    Releases at or below VERSION are still applied; bins packages still follow their repository.
    A held release is not forgotten: after `zos-upgrade unhold` the next round applies it.
    """
    store, state_dir = _control(config, root)
    pin = version if version is not None else _running_version(state_dir)
    before = store.set_hold(pin)
    was = f" (was held at {before.hold.version})" if before.hold is not None else ""
    click.echo(f"held at {pin}{was}: the daemon applies no boot release above it until "
               "`zos-upgrade unhold`")


@click.command(name="unhold", epilog=_EXIT_CODES)
@_node_options
def unhold(config: Path | None, root: Path | None) -> None:
    """Lift the hold: the daemon's next round applies releases above it again.

    \b
    Example:
      zos-upgrade unhold --config /etc/zos-upgrade.toml
    """
    before = _control(config, root)[0].clear_hold()
    click.echo("not held: nothing to lift" if before.hold is None
               else f"hold at {before.hold.version} lifted (set {_when(before.hold.at)})")


@click.command(name="pause", epilog=_EXIT_CODES)
@_node_options
def pause(config: Path | None, root: Path | None) -> None:
    """Stop automatic upgrades: the daemon keeps checking but applies nothing (boot or bins).

    \b
    Example:
      zos-upgrade pause --config /etc/zos-upgrade.toml
    A transaction already running finishes; nothing new starts until `zos-upgrade resume`.
    """
    before = _control(config, root)[0].set_pause()
    if before.pause is not None:
        click.echo(f"already paused since {_when(before.pause.at)}")
    else:
        click.echo("paused: the daemon applies nothing until `zos-upgrade resume`")


@click.command(name="resume", epilog=_EXIT_CODES)
@_node_options
def resume(config: Path | None, root: Path | None) -> None:
    """Resume automatic upgrades: the daemon's next round applies what it finds again.

    \b
    Example:
      zos-upgrade resume --config /etc/zos-upgrade.toml
    """
    before = _control(config, root)[0].clear_pause()
    click.echo("not paused: nothing to resume" if before.pause is None
               else f"resumed (paused since {_when(before.pause.at)})")


commands = (hold, unhold, pause, resume)
