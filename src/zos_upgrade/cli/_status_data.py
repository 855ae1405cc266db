"""What ``zos-upgrade status`` shows, gathered (its rendering and the command are in :mod:`.status`).

Reads only local files, never the network, and writes nothing: the boot files under the node root;
in the state directory ``status.json`` (the daemon's record), ``journal.json`` (the transaction
running now, read-only), ``transactions.json`` (the last transactions), ``failed-releases.json``,
``control.json`` (hold / pause, when present); and the kernel's lock table (is the daemon alive).
A garbled file is shown as such (exit 0): ``status`` is what an operator runs when something is
wrong. Exit 1 only when the root or the config cannot be read. The JSON shape is
:data:`SCHEMA_VERSION` (docs/operations.md, "status --json").
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from zos_upgrade.config import Config
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.failed import FailedReleases
from zos_upgrade.node.history import read_history
from zos_upgrade.node.liveness import check_daemon
from zos_upgrade.node.state import read_state
from zos_upgrade.versions import parse_version

__all__ = ["SCHEMA_VERSION", "Alive", "BinStatus", "Drift", "NodeStatus", "Running",
           "collect_status"]

SCHEMA_VERSION = 1  # bumped when a field changes meaning or goes away (new fields do not bump it)


@dataclass
class BinStatus:
    name: str  # repo/name
    version: str | None  # None: the name carries no version
    updated: int
    target: str | None


@dataclass
class Alive:
    """Is the daemon alive: the lock held, the pid checked (node.liveness)."""

    state: str  # running, stopped, unknown
    pid: int | None
    process_exists: bool
    is_daemon: bool
    lock_held: bool
    detail: str


@dataclass
class Running:
    """The transaction under way, from the journal (read-only)."""

    id: str
    kind: str
    phase: str  # the journal's phase (upgrade.journal.Phase)
    steps_done: int  # steps of upgrade.steps.STEPS done
    steps_total: int
    # the last step of STEPS the journal recorded as done (a step the transaction does not need,
    # e.g. self-update, is counted as passed); None before the first
    last_step_done: str | None
    from_version: str
    to_version: str
    started: float
    updated: float
    failure: dict[str, str] | None = None  # rolling back (phase rolling-back): {step, reason}


@dataclass
class Drift:
    state: str  # in-sync, behind (the channel offers newer), ahead (the node runs newer), unknown
    installed: str | None
    channel: str | None


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
    schema_version: int = SCHEMA_VERSION
    alive: Alive | None = None
    transaction: Running | None = None  # None: no transaction under way
    transaction_error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # transactions.json, newest first
    history_error: str | None = None
    previous_version: str | None = None  # the release before the last committed boot upgrade
    # the operator's hold and pause (control.json): {"hold": {"version", "at"} | None, "pause": {"at"} | None}
    control: dict[str, Any] | None = None
    control_error: str | None = None
    # what vouched for the boot release `zos-upgrade install` put here (its manifest); None: the daemon's
    boot_verified_by: str | None = None
    boot_unsigned: bool = False
    drift: Drift | None = None
    # the node in the fleet and its rollout strategy: {"id", "group", "strategy", "next_window",
    # "window_closes", "waiting"}; the id from status.json, else the one kept in node-id.json
    fleet: dict[str, Any] = field(default_factory=dict)
    fleet_error: str | None = None


def collect_status(root: Path, state_dir: Path, config: Config | None = None,
                   now: float | None = None) -> NodeStatus:
    """Gather everything ``status`` shows; boot and state problems become fields, not exceptions.
    With the node's ``config``, its identity and rollout strategy come from it (the next maintenance
    window computed at ``now``), not only from what the daemon last recorded."""
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
    pid = status.daemon.get("pid") if status.daemon else None
    status.alive = Alive(**vars(check_daemon(state_dir, pid if isinstance(pid, int) else None)))
    try:
        status.transaction = _running(state_dir)
    except ZosUpgradeError as exc:
        status.transaction_error = str(exc)
    try:
        history = read_history(state_dir)
        status.history = [msgspec.to_builtins(e) for e in reversed(history)]
        # the last committed boot upgrade's old release; a first install ("" or 0.0.0) had none
        last = next((e for e in reversed(history) if e.kind == "boot" and e.result == "committed"), None)
        previous = last.from_version if last is not None else ""
        status.previous_version = previous if previous not in ("", "0.0.0") else None
    except ZosUpgradeError as exc:
        status.history_error = str(exc)
    _read_install(status, state_dir)
    try:
        status.control = _read_control(state_dir)
    except ZosUpgradeError as exc:
        status.control_error = str(exc)
    channel = status.daemon.get("channel_version") if status.daemon else None
    status.drift = _drift(status.boot_version, channel if isinstance(channel, str) else None)
    _read_fleet(status, state_dir, config, time.time() if now is None else now)
    return status


def _read_fleet(status: NodeStatus, state_dir: Path, config: Config | None, now: float) -> None:
    """The node's id, group and rollout strategy: from the config when given, else as the daemon
    last recorded them; the id the node keeps (node-id.json) when neither names one."""
    from zos_upgrade.daemon.strategy import calendar_of
    from zos_upgrade.node.identity import read_generated_id

    daemon = status.daemon or {}
    keys = ("group", "strategy", "next_window", "window_closes", "waiting")
    fleet = status.fleet = {"id": daemon.get("node_id"), **{key: daemon.get(key) for key in keys}}
    if config is not None:
        fleet["id"] = config.node.id or fleet["id"]
        fleet["group"], fleet["strategy"] = config.node.group, config.rollout.strategy
        fleet["next_window"] = fleet["window_closes"] = None
        if config.rollout.strategy == "periodic":
            calendar = calendar_of(config)
            fleet["next_window"], fleet["window_closes"] = calendar.next_open(now), calendar.closes_at(now)
    if fleet["id"] is None:
        try:
            fleet["id"] = read_generated_id(state_dir)
        except ZosUpgradeError as exc:
            status.fleet_error = str(exc)


def _running(state_dir: Path) -> Running | None:
    """The journal's transaction and how far it got; None when there is none."""
    from zos_upgrade.upgrade.journal import Journal
    from zos_upgrade.upgrade.steps import STEPS

    record = Journal(state_dir).load()
    if record is None:
        return None
    done = 0
    for index, step in enumerate(STEPS):
        if step.phase_after is record.phase:
            done = index + 1
        elif step.phase_before is record.phase:
            done = index  # recorded before the step runs: it is running
    failure = None
    if record.failure is not None:
        failure = {"step": record.failure.step, "reason": record.failure.reason}
    return Running(id=record.id, kind=record.kind, phase=record.phase.value, steps_done=done,
                   steps_total=len(STEPS), last_step_done=STEPS[done - 1].name if done else None,
                   from_version=record.from_version, to_version=record.to_version, started=record.started,
                   updated=record.updated, failure=failure)


def _read_control(state_dir: Path) -> dict[str, Any]:
    """``control.json`` as ``zos-upgrade hold|pause`` wrote it: ``{"hold": {"version", "at"} | None,
    "pause": {"at"} | None}`` (both None when the node has no such file)."""
    from zos_upgrade.node.control import NodeControl

    state = NodeControl(state_dir).load()
    return {"hold": msgspec.to_builtins(state.hold), "pause": msgspec.to_builtins(state.pause)}


def _read_install(status: NodeStatus, state_dir: Path) -> None:
    """What vouched for the installed boot release (``zos-upgrade install`` records it in the manifest)."""
    from zos_upgrade.upgrade.manifest import ManifestStore

    try:
        manifest = ManifestStore(state_dir).load("boot")
    except ZosUpgradeError:  # the manifests are the transaction's business; status shows the rest
        return
    if manifest is not None:
        status.boot_verified_by = manifest.info.get("verified_by")
        status.boot_unsigned = manifest.info.get("unsigned") is True


def _drift(installed: str | None, channel: str | None) -> Drift:
    """Where the node stands against its channel (the release the daemon last saw offered)."""
    if installed is None or channel is None:
        return Drift("unknown", installed, channel)
    try:
        ours, theirs = parse_version(installed), parse_version(channel)
    except ZosUpgradeError:
        return Drift("unknown", installed, channel)
    state = "in-sync" if ours == theirs else "behind" if theirs > ours else "ahead"
    return Drift(state, installed, channel)
