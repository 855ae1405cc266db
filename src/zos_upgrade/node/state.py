"""What the daemon records about itself for ``zos-upgrade status``: ``<state_dir>/status.json``.

The daemon rewrites this small document after every check (atomically, through
:mod:`zos_upgrade.fsutil`), so an operator can see at a glance when the node last looked for a
release, what happened, and why the last attempt failed. It is a report, not a source of truth: the
install manifests are. Unknown fields are accepted so an older ``status`` can read what a newer
daemon wrote; a field of the wrong type is an error naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import atomic_write_bytes

__all__ = [
    "STATE_FILE",
    "CheckResult",
    "DaemonState",
    "RecoveryRecord",
    "RunningRecord",
    "StateFileError",
    "UpgradeRecord",
    "read_state",
    "state_path",
    "write_state",
]

STATE_FILE = "status.json"
# the document is a few hundred bytes; anything this large is not ours
_MAX_STATE_BYTES = 1 << 20

CheckResult = Literal["up-to-date", "upgraded", "held", "paused", "waiting", "rolled-back", "failed",
                      "rollback-incomplete", "error"]
"""What the last check led to: nothing newer; an upgrade committed; a release that failed here before
not applied again (``failed-releases.json``) or one above the operator's hold (``control.json``);
nothing applied because the operator paused upgrades; a release not started yet by the rollout
strategy (outside every maintenance window, or its phased rollout has not reached this node); an
upgrade rolled back; a release
refused before anything changed (a bad download, a hostile flist...); a rollback that could not finish
(the journal stays, the next start retries it: look at the node); the check itself failed (hub
unreachable...)."""


class StateFileError(ZosUpgradeError):
    """``status.json`` exists but cannot be read or is not a daemon state document."""


class UpgradeRecord(
    msgspec.Struct, kw_only=True, frozen=True, rename={"from_version": "from", "to_version": "to"}
):
    """The last upgrade the daemon attempted (whatever its outcome: see ``DaemonState.last_result``)."""

    from_version: str
    to_version: str
    started: float  # unix time
    duration: float  # seconds
    bytes_downloaded: int = 0  # also for a failed transaction: what it fetched before it failed
    result: CheckResult | None = None  # how it ended (None: written by a daemon before this field)


class RunningRecord(msgspec.Struct, kw_only=True, frozen=True,
                    rename={"from_version": "from", "to_version": "to"}):
    """The transaction the daemon is running as this document is written (its phase is the journal's)."""

    what: str  # e.g. "boot upgrade tf-zos/zos:latest.fl 1.1.0"
    from_version: str
    to_version: str | None  # None: a bins package, not the node's release
    started: float  # unix time


class RecoveryRecord(msgspec.Struct, kw_only=True, frozen=True):
    """An unfinished transaction the daemon could not recover yet: it retries with backoff and applies
    nothing meanwhile."""

    since: float  # unix time of the first failed attempt
    attempts: int
    last_error: str
    next_try: float | None = None  # unix time of the next attempt (None: not scheduled, e.g. --once)


class DaemonState(msgspec.Struct, kw_only=True, frozen=True):
    updated: float  # unix time this document was written
    pid: int | None = None  # the daemon's process id when it wrote this
    source: str | None = None  # what the daemon watches: "hub/<repo>/<name>" or the publisher URL
    current_version: str | None = None  # the release the node runs, as the daemon knows it
    last_check: float | None = None  # unix time of the last completed check (successful or not)
    last_result: CheckResult | None = None
    last_error: str | None = None  # message of the last failure; None once a check succeeds
    last_upgrade: UpgradeRecord | None = None
    recovery: RecoveryRecord | None = None  # set while an unfinished transaction awaits recovery
    running: RunningRecord | None = None  # set while a transaction runs
    next_check: float | None = None  # unix time of the next round (None: not scheduled, e.g. --once)
    # the release the followed channel offered at the last check that reached it (the hub link's
    # version, the release server's latest): what ``status`` compares the node with (drift)
    channel_version: str | None = None
    # the node in the fleet (node/identity.py) and its rollout strategy ([rollout] strategy)
    node_id: str | None = None
    group: str | None = None
    strategy: str | None = None
    next_window: float | None = None  # periodic: unix time the next maintenance window opens (now: inside)
    window_closes: float | None = None  # periodic, inside a window: when it closes
    waiting: str | None = None  # why the running transaction waits (a FleetLock slot), None: it does not
    # the version of the upgrader program that wrote this (after a self-update: the new program's)
    program_version: str | None = None


def state_path(state_dir: Path | str) -> Path:
    return Path(state_dir) / STATE_FILE


def read_state(state_dir: Path | str) -> DaemonState | None:
    """The state the daemon last wrote, or ``None`` if it never ran here (no ``status.json``).

    Raises :class:`StateFileError` when the file exists but is unreadable, too large or not a state
    document.
    """
    path = state_path(state_dir)
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read daemon state {path}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_STATE_BYTES:
        raise StateFileError(
            f"daemon state {path} is larger than {_MAX_STATE_BYTES} bytes (expected a small JSON object)"
        )
    try:
        return msgspec.json.decode(data, type=DaemonState, strict=True)
    except msgspec.ValidationError as exc:
        raise StateFileError(f"daemon state {path} has the wrong shape: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise StateFileError(f"daemon state {path} is not valid JSON: {exc}") from exc


def write_state(state_dir: Path | str, state: DaemonState) -> None:
    """Atomically replace ``<state_dir>/status.json`` (creating ``state_dir`` if needed)."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    document = msgspec.json.format(msgspec.json.encode(state), indent=2) + b"\n"
    atomic_write_bytes(state_path(directory), document)
