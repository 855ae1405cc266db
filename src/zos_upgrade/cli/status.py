"""``zos-upgrade status``: what this node runs and what its daemon does, at a glance.

What is shown is gathered by :mod:`._status_data` (local files only, never the network); this
module renders it as text or JSON. The text is one ``label: value`` per line with the values in
one column: a long or multi-line value (a failure reason carries service output) is wrapped and
indented under its value column, so the labels stay readable.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zos_upgrade.cli import _show_config
from zos_upgrade.cli._common import locate_node
from zos_upgrade.cli._status_data import SCHEMA_VERSION, NodeStatus, collect_status

if TYPE_CHECKING:
    from zos_upgrade.config import Config

__all__ = ["SCHEMA_VERSION", "NodeStatus", "collect_status", "command", "render_text"]

_LABEL = 16  # "installed bins: " is the longest label
_WIDTH = 100  # text wraps here; a terminal narrower than this wraps again, but the indent survives


def _field(label: str, value: str, *, indent: int = 0) -> list[str]:
    """``label: value``, the value wrapped and every further line indented under the value column."""
    pad = " " * (indent + _LABEL)
    head = f"{' ' * indent}{label + ':':<{_LABEL}}" if label else pad
    lines: list[str] = []
    for part in value.splitlines() or [""]:
        lines += textwrap.wrap(part, _WIDTH - len(pad), break_on_hyphens=False) or [""]
    return [head + lines[0], *(pad + line for line in lines[1:])]


def _when(stamp: float | None, now: float) -> str:
    if stamp is None:
        return "never"
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
    age = now - stamp
    if age < 0:
        return f"{shown} (in the future: check the clock)"
    return f"{shown} ({_span(age)} ago)"


def _due(stamp: float | None, now: float) -> str:
    """A time to come (the next check)."""
    if stamp is None:
        return "not scheduled (the daemon is not looping: --once, stopped, or checking now)"
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
    if stamp >= now:
        return f"{shown} (in {_span(stamp - now)})"
    return f"{shown} (overdue by {_span(now - stamp)})"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def render_text(status: NodeStatus, now: float, *, history: int = 5) -> str:
    """The human view; ``now`` is a parameter so the ages are testable."""
    lines = _field("node root", status.root) + _field("boot method", status.boot_method)
    if status.boot_error:
        lines += _field("boot flist", f"unknown ({status.boot_error})")
    elif status.boot_flist:
        target = f" -> {status.boot_target}" if status.boot_target else ""
        lines += _field("boot flist", f"{status.boot_flist}{target}")
        lines += _field("boot version", str(status.boot_version))
    else:
        lines += _field("boot flist", "none recorded")
    if status.previous_version:
        lines += _field("previous", f"{status.previous_version} (the release before the last upgrade)")
    lines += _render_drift(status)
    if status.bins_error:
        lines += _field("installed bins", f"unknown ({status.bins_error})")
    else:
        lines += _field("installed bins", str(len(status.bins)))
        width = max((len(b.name) for b in status.bins), default=0)
        for item in status.bins:
            lines.append(f"  {item.name:<{width}}  {item.version or 'no version'}")
    lines += _field("state dir", status.state_dir)
    lines += _render_fleet(status, now)
    lines += _render_alive(status) + _render_control(status, now) + _render_running(status, now)
    lines += _render_trust(status, now)
    lines += _render_daemon(status, now) + _render_failed(status, now) + _render_history(status, now, history)
    return "\n".join(lines)


def _render_fleet(status: NodeStatus, now: float) -> list[str]:
    """Node id, group, and what the rollout strategy waits for (the next maintenance window)."""
    fleet = status.fleet
    if status.fleet_error:
        lines = _field("node id", f"unreadable ({status.fleet_error})")
    else:
        lines = _field("node id", fleet.get("id") or "none yet (generated at the daemon's first start)")
    if fleet.get("group"):
        lines += _field("group", fleet["group"])
    strategy = fleet.get("strategy")
    if not strategy:
        return lines
    said = strategy
    if strategy == "periodic":
        opens, closes = fleet.get("next_window"), fleet.get("window_closes")
        if closes is not None:
            said += f" (inside a maintenance window, it closes {_due(closes, now)})"
        elif opens is not None:
            said += f" (next maintenance window opens {_due(opens, now)})"
    lines += _field("strategy", said)
    if fleet.get("waiting"):
        lines += _field("waiting", fleet["waiting"])
    return lines


def _render_drift(status: NodeStatus) -> list[str]:
    drift = status.drift
    if drift is None or drift.channel is None:
        return _field("channel", "not seen yet (the daemon has not reached its source)")
    said = {"in-sync": "the node runs it", "behind": f"newer than the node's {drift.installed}",
            "ahead": f"the node runs a newer release ({drift.installed}): it is ahead of its channel",
            "unknown": f"cannot compare with the node's {drift.installed or 'unknown version'}"}
    return _field("channel", f"{drift.channel} ({drift.state}: {said[drift.state]})")


def _render_alive(status: NodeStatus) -> list[str]:
    alive = status.alive
    if alive is None:
        return []
    lines = _field("daemon", f"{alive.state} ({alive.detail})")
    program = status.daemon.get("program_version") if status.daemon else None
    if alive.state == "running" and isinstance(program, str):  # what the running daemon wrote
        lines += _field("program", f"zos-upgrade {program}")
    return lines


def _render_control(status: NodeStatus, now: float) -> list[str]:
    """An unsigned install, the operator's pause and hold (``install``, ``pause``, ``hold``)."""
    lines: list[str] = []
    if status.boot_unsigned:
        lines += _field("boot release", "UNSIGNED: installed with `zos-upgrade install --allow-unsigned`, "
                                        "nothing vouched for its bytes")
    if status.control_error:
        return lines + _field("control", f"unreadable, nothing is applied ({status.control_error})")
    control = status.control or {}
    if control.get("pause"):
        lines += _field("paused", f"since {_when(control['pause']['at'], now)}: nothing is applied until "
                                  "`zos-upgrade resume`")
    if control.get("hold"):
        hold = control["hold"]
        lines += _field("held at", f"{hold['version']} since {_when(hold['at'], now)}: no boot release above "
                                   "it until `zos-upgrade unhold`")
    if not control.get("pause") and not control.get("hold"):
        lines += _field("control", "automatic upgrades (not paused, no hold)")
    return lines


def _render_running(status: NodeStatus, now: float) -> list[str]:
    if status.transaction_error:
        return _field("now", f"unknown: the journal is unreadable ({status.transaction_error})")
    tx = status.transaction
    if tx is None:
        return _field("now", "no transaction running")
    what = f"{tx.kind} {tx.from_version} -> {tx.to_version}, phase {tx.phase}"
    if tx.failure is not None:
        return _field("now", f"{what}: rolling back since {_when(tx.updated, now)}, failed at "
                             f"{tx.failure['step']}: {tx.failure['reason']}")
    after = f", the last done: {tx.last_step_done}" if tx.last_step_done else ""
    return _field("now", f"{what} ({tx.steps_done} of {tx.steps_total} steps done{after}), "
                         f"started {_when(tx.started, now)}")


def _render_daemon(status: NodeStatus, now: float) -> list[str]:
    if status.daemon_error:
        return _field("daemon state", f"unreadable ({status.daemon_error})")
    daemon = status.daemon
    if daemon is None:
        return _field("last check", "never: the daemon has not run here yet (no status.json)")
    lines = _field("last check", _when(daemon.get("last_check"), now))
    lines += _field("last result", daemon.get("last_result") or "none")
    if status.alive is not None and status.alive.state == "running":
        lines += _field("next check", _due(daemon.get("next_check"), now))
    if daemon.get("current_version"):
        lines += _field("daemon version", daemon["current_version"])
    if daemon.get("last_error"):
        lines += _field("last error", daemon["last_error"])
    upgrade = daemon.get("last_upgrade")
    if upgrade:
        result = f", {upgrade['result']}" if upgrade.get("result") else ""
        lines += _field("last upgrade", f"{upgrade['from']} -> {upgrade['to']}{result} at "
                                        f"{_when(upgrade['started'], now)}, {upgrade['duration']:.1f}s, "
                                        f"{upgrade.get('bytes_downloaded', 0)} bytes downloaded")
    recovery = daemon.get("recovery")
    if recovery:
        due = recovery.get("next_try")
        next_try = f", next try in {max(0, int(due - now))}s" if due is not None else ""
        lines += _field("recovery", f"PENDING since {_when(recovery['since'], now)}, {recovery['attempts']} "
                                    f"attempt(s) failed{next_try}: {recovery['last_error']}")
    lines += _field("state written", _when(daemon.get("updated"), now))
    return lines


def _render_failed(status: NodeStatus, now: float) -> list[str]:
    if status.failed_releases_error:
        return _field("held releases", f"unknown, nothing is applied ({status.failed_releases_error})")
    if not status.failed_releases:
        return []
    lines = _field("held releases", f"{len(status.failed_releases)} (failed here; not applied again until "
                                    "`zos-upgrade clear-failed [VERSION]` or a newer release appears)")
    for entry in status.failed_releases:
        lines += _field(f"{entry['version'] or entry['id']}", f"{entry['id']} failed at {entry['step']} "
                        f"{_when(entry['at'], now)}: {entry['reason']}", indent=2)
    return lines


def _render_history(status: NodeStatus, now: float, limit: int) -> list[str]:
    if status.history_error:
        return _field("transactions", f"unknown ({status.history_error})")
    if not status.history or limit <= 0:
        return []
    shown = status.history[:limit]
    lines = _field("transactions", f"the last {len(shown)} of {len(status.history)}, newest first")
    for entry in shown:  # "- " starts an entry; its wrapped reason stays indented under it
        first, *rest = _field("", _history_line(entry, now), indent=2)
        lines += [" " * _LABEL + "- " + first.lstrip(), *rest]
    return lines


def _history_line(entry: dict[str, Any], now: float) -> str:
    line = f"{entry['kind']} {entry['from_version']} -> {entry['to_version']} {entry['result']} " \
           f"{_when(entry['time'], now)}"
    if entry.get("step"):
        line += f" at {entry['step']}"
    return f"{line}: {entry['reason']}" if entry.get("reason") else line


def _trust_mode(cfg: Config | None) -> str | None:
    if cfg is None:
        return None
    if cfg.tuf:
        return "tuf"
    if cfg.unauthenticated:
        return "unauthenticated"
    return "release signatures" if cfg.source.publisher is not None else "unknown"


def _render_trust(status: NodeStatus, now: float) -> list[str]:
    """What vouches for releases; under TUF each repository's roles, and a freeze since when."""
    trust = status.trust or {}
    mode = trust.get("mode", "unknown")
    if mode == "unauthenticated":
        return _field("trust", "UNAUTHENTICATED: [trust] insecure = true, anyone answering for the hub "
                               "can install anything (set [trust] root)")
    if mode == "release signatures":
        return _field("trust", "ed25519-signed release objects ([source] trusted_keys), no freshness")
    lines = _field("trust", "TUF (pinned root)" if mode == "tuf" else "unknown (give --config)")
    for repo in trust.get("repos", []):
        lines += _trust_repo(repo, now)
    return lines


def _trust_repo(repo: dict[str, Any], now: float) -> list[str]:
    """One TUF repository: how its last refresh ended, then each role's trusted version and expiry."""
    name = str(repo.get("repo"))
    if repo.get("unreadable"):
        return _field(name, "status file unreadable", indent=2)
    error = repo.get("error")
    if isinstance(error, dict) and error.get("type") in ("FreezeAttack", "ExpiredMetadata"):
        said = (f"metadata expired since {error.get('expires')} ({error.get('role')} role): refused, "
                "nothing installed until fresh metadata are signed")
    elif isinstance(error, dict):
        said = f"REFUSED at {error.get('at')}: {error.get('type')}: {error.get('message')}"
    else:
        said = f"verified, last refresh {repo.get('last_success')}"
    lines = _field(name, said, indent=2)
    roles = repo.get("roles") or {}
    for role, info in roles.items():
        if isinstance(info, dict):
            lines += _field(role, f"v{info.get('version')}, expires {info.get('expires')}", indent=4)
    return lines


def _run(config: Path | None, root: Path | None, as_json: bool, history: int,
         clock: Callable[[], float]) -> None:
    from zos_upgrade.config import load_config

    node_root, state_dir = locate_node(config, root)
    now = clock()
    loaded = load_config(config) if config is not None else None
    status = collect_status(node_root, state_dir, loaded, now, trust_mode=_trust_mode(loaded))
    if as_json:
        status.history = status.history[:history]
        click.echo(json.dumps(asdict(status), sort_keys=True))
    else:
        click.echo(render_text(status, now, history=history))


_EPILOG = """\b
Examples:
  zos-upgrade status --config /etc/zos-upgrade.toml
  zos-upgrade status --root / --json | jq .alive.state
  zos-upgrade status --history 20

\b
Exit codes:
  0  shown (also when a file it reads is damaged: the field says so)
  1  the node root or the config cannot be read
  2  usage error (e.g. --config and --root together)
"""


@click.command(name="status", epilog=_EPILOG)
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False),
              help="Daemon config file: node root and state directory come from it.")
@click.option("--root", "root", type=click.Path(path_type=Path, file_okay=False),
              help="Node root (default /); the state directory is the default one under it.")
@click.option("--json", "as_json", is_flag=True,
              help=f"One JSON object instead of text (schema_version {SCHEMA_VERSION}, docs/operations.md).")
@click.option("--history", "history", type=click.IntRange(0, 1000), default=5, show_default=True,
              help="How many of the last transactions to show (the state dir keeps 20).")
@click.option("--show-config", is_flag=True,
              help="With --config: print the merged config (main file and its fragments), each key with "
                   "the file that set it, instead of the node's state.")
def command(config: Path | None, root: Path | None, as_json: bool, history: int, show_config: bool) -> None:
    """Show what this node runs and what its daemon does.

    The boot release and the one before it (the rollback target), the channel's release and whether
    the node is behind or ahead of it, installed packages, whether the daemon is alive (the node lock
    and its pid checked), hold / pause, the transaction running now (phase and steps done), the last
    check, result, error and upgrade, the next check, releases held as failed and the last
    transactions with their result and reason. Reads local files only; changes nothing.
    """
    if show_config:
        if config is None:
            raise click.UsageError("--show-config needs --config FILE")
        _show_config.show_config(config, as_json)
        return
    _run(config, root, as_json, history, time.time)
