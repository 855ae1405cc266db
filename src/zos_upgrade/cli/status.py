"""``zos-upgrade status``: what this node runs and what its daemon last did, at a glance.

Reads only local files (boot files under the node root, ``status.json`` and ``failed-releases.json``
in the state directory);
never the network. A garbled boot or state file is shown as such (exit 0): ``status`` is what an
operator runs when something is wrong. Exit 1 only when the root or the config cannot be read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import msgspec

from zos_upgrade.cli._common import locate_node
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.control import NodeControl
from zos_upgrade.node.failed import FailedReleases
from zos_upgrade.node.state import read_state

__all__ = ["NodeStatus", "collect_status", "command", "render_text"]


@dataclass
class BinStatus:
    name: str  # repo/name
    version: str | None  # None: the name carries no version
    updated: int
    target: str | None


@dataclass
class NodeStatus:
    root: str
    state_dir: str
    boot_method: str
    boot_flist: str | None = None  # repo/name of the link
    boot_target: str | None = None  # what the link pointed at when the node booted/upgraded
    boot_version: str | None = None
    boot_error: str | None = None
    bins: list[BinStatus] = field(default_factory=list)
    bins_error: str | None = None
    daemon: dict[str, Any] | None = None  # DaemonState as JSON; None: the daemon never wrote one
    daemon_error: str | None = None
    # releases that failed here and are held back (failed-releases.json), oldest first
    failed_releases: list[dict[str, Any]] = field(default_factory=list)
    failed_releases_error: str | None = None
    # the operator's hold and pause (control.json): {"hold": {"version", "at"} | null, "pause": {"at"} | null}
    control: dict[str, Any] | None = None
    control_error: str | None = None
    # what vouched for the boot release `zos-upgrade install` put here (its manifest); None: the daemon's
    boot_verified_by: str | None = None
    boot_unsigned: bool = False


def collect_status(root: Path, state_dir: Path) -> NodeStatus:
    """Gather everything ``status`` shows; boot and state problems become fields, not exceptions."""
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        raise ZosUpgradeError(f"node root {root} is not a readable directory")
    boot = Boot(root)
    status = NodeStatus(root=str(root), state_dir=str(state_dir), boot_method=str(boot.detect_boot_method()))
    try:
        current = boot.current() if boot.name() else None
        if current is not None:
            status.boot_flist = current.fqdn()
            status.boot_target = current.absolute() if current.is_symlink else None
            status.boot_version = str(boot.version())
    except ZosUpgradeError as exc:
        status.boot_error = str(exc)
    try:
        for key, flist in sorted(boot.current_bins().items()):
            try:
                version: str | None = str(flist.version())
            except ZosUpgradeError:
                version = None
            status.bins.append(BinStatus(
                name=key,
                version=version,
                updated=flist.info.updated,
                target=flist.info.target,
            ))
    except ZosUpgradeError as exc:
        status.bins_error = str(exc)
    try:
        state = read_state(state_dir)
        status.daemon = None if state is None else msgspec.to_builtins(state)
    except ZosUpgradeError as exc:
        status.daemon_error = str(exc)
    try:
        status.failed_releases = [msgspec.to_builtins(r) for r in FailedReleases(state_dir).load()]
    except ZosUpgradeError as exc:
        status.failed_releases_error = str(exc)
    _collect_control(status, state_dir)
    return status


def _collect_install(status: NodeStatus, state_dir: Path) -> None:
    from zos_upgrade.upgrade.manifest import ManifestStore

    try:
        manifest = ManifestStore(state_dir).load("boot")
    except ZosUpgradeError:  # the manifests are the transaction's business; status shows the rest
        return
    if manifest is not None:
        status.boot_verified_by = manifest.info.get("verified_by")
        status.boot_unsigned = manifest.info.get("unsigned") is True


def _collect_control(status: NodeStatus, state_dir: Path) -> None:
    _collect_install(status, state_dir)
    try:
        state = NodeControl(state_dir).load()
        status.control = {"hold": msgspec.to_builtins(state.hold), "pause": msgspec.to_builtins(state.pause)}
    except ZosUpgradeError as exc:
        status.control_error = str(exc)


def _render_control(status: NodeStatus, now: float) -> list[str]:
    """The unsigned-install, hold and pause lines (``install``, ``hold``, ``pause``): only when set."""
    lines = []
    if status.boot_unsigned:
        lines.append("boot release:   UNSIGNED: installed with `zos-upgrade install --allow-unsigned`, "
                     "nothing vouched for its bytes")
    if status.control_error:
        return [*lines, f"control:        unreadable, nothing is applied ({status.control_error})"]
    control = status.control or {}
    if control.get("pause"):
        lines.append(f"paused:         since {_when(control['pause']['at'], now)}: nothing is applied "
                     "until `zos-upgrade resume`")
    if control.get("hold"):
        hold = control["hold"]
        lines.append(f"held at:        {hold['version']} since {_when(hold['at'], now)}: no boot release "
                     "above it until `zos-upgrade unhold`")
    return lines


def _when(stamp: float | None, now: float) -> str:
    if stamp is None:
        return "never"
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
    age = now - stamp
    if age < 0:
        return f"{shown} (in the future: check the clock)"
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if age >= seconds:
            return f"{shown} ({int(age // seconds)}{unit} ago)"
    return f"{shown} ({int(age)}s ago)"


def render_text(status: NodeStatus, now: float) -> str:
    """The human view; ``now`` is a parameter so the ages are testable."""
    lines = [f"node root:      {status.root}", f"boot method:    {status.boot_method}"]
    if status.boot_error:
        lines.append(f"boot flist:     unknown ({status.boot_error})")
    elif status.boot_flist:
        target = f" -> {status.boot_target}" if status.boot_target else ""
        lines.append(f"boot flist:     {status.boot_flist}{target}")
        lines.append(f"boot version:   {status.boot_version}")
    else:
        lines.append("boot flist:     none recorded")
    if status.bins_error:
        lines.append(f"installed bins: unknown ({status.bins_error})")
    else:
        lines.append(f"installed bins: {len(status.bins)}")
        width = max((len(b.name) for b in status.bins), default=0)
        for item in status.bins:
            lines.append(f"  {item.name:<{width}}  {item.version or 'no version'}")
    lines.append(f"state dir:      {status.state_dir}")
    if status.daemon_error:
        lines.append(f"daemon:         state unreadable ({status.daemon_error})")
    elif status.daemon is None:
        lines.append("daemon:         has not run here yet (no status.json)")
    else:
        daemon = status.daemon
        lines.append(f"last check:     {_when(daemon.get('last_check'), now)}")
        lines.append(f"last result:    {daemon.get('last_result') or 'none'}")
        if daemon.get("current_version"):
            lines.append(f"daemon version: {daemon['current_version']}")
        if daemon.get("last_error"):
            lines.append(f"last error:     {daemon['last_error']}")
        upgrade = daemon.get("last_upgrade")
        if upgrade:
            lines.append(
                f"last upgrade:   {upgrade['from']} -> {upgrade['to']} at {_when(upgrade['started'], now)}, "
                f"{upgrade['duration']:.1f}s, {upgrade.get('bytes_downloaded', 0)} bytes downloaded"
            )
        recovery = daemon.get("recovery")
        if recovery:
            due = recovery.get("next_try")
            next_try = f", next try in {max(0, int(due - now))}s" if due is not None else ""
            lines.append(f"recovery:       PENDING since {_when(recovery['since'], now)}, "
                         f"{recovery['attempts']} attempt(s) failed{next_try}: {recovery['last_error']}")
        if daemon.get("pid") is not None:
            lines.append(f"daemon pid:     {daemon['pid']}")
        lines.append(f"state written:  {_when(daemon.get('updated'), now)}")
    lines += _render_failed(status, now)
    lines += _render_control(status, now)
    return "\n".join(lines)


def _render_failed(status: NodeStatus, now: float) -> list[str]:
    if status.failed_releases_error:
        return [f"held releases:  unknown, nothing is applied ({status.failed_releases_error})"]
    if not status.failed_releases:
        return []
    lines = [f"held releases:  {len(status.failed_releases)} (failed here; not applied again until "
             "`zos-upgrade clear-failed [VERSION]` or a newer release appears)"]
    for entry in status.failed_releases:
        lines.append(f"  {entry['version'] or entry['id']}  {entry['id']}  failed at {entry['step']} "
                     f"{_when(entry['at'], now)}: {entry['reason']}")
    return lines


def _run(config: Path | None, root: Path | None, as_json: bool, clock: Callable[[], float]) -> None:
    node_root, state_dir = locate_node(config, root)
    status = collect_status(node_root, state_dir)
    if as_json:
        click.echo(json.dumps(asdict(status), sort_keys=True))
    else:
        click.echo(render_text(status, clock()))


@click.command(name="status")
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False),
              help="Daemon config file: node root and state directory come from it.")
@click.option("--root", "root", type=click.Path(path_type=Path, file_okay=False),
              help="Node root (default /); the state directory is the default one under it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def command(config: Path | None, root: Path | None, as_json: bool) -> None:
    """Show what this node runs and what the daemon last did.

    Boot method, boot flist and its version, installed packages with versions, the daemon's last
    check (time, age, result) and last error. Reads local files only.
    """
    _run(config, root, as_json, time.time)
