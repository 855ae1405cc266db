"""Is the daemon alive? The pid ``status.json`` names, checked rather than printed.

Three facts, each read-only: the process exists (``/proc/<pid>``), it is a zos-upgrade daemon (its
command line), and the node's lock is held (the kernel's lock table, :func:`zos_upgrade.lock.lock_holder`).
The lock is the one that matters: a daemon that holds it is running whatever the pid in the status
says (a ``status.json`` written by an earlier daemon); a pid that is alive but holds no lock has
been reused by another program since the daemon died.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.lock import lock_holder

__all__ = ["DaemonLiveness", "LivenessWord", "check_daemon", "is_daemon_process"]

LivenessWord = Literal["running", "stopped", "unknown"]

PROC = Path("/proc")


@dataclass(frozen=True)
class DaemonLiveness:
    state: LivenessWord  # running: the lock is held; stopped: it is not; unknown: no lock table
    pid: int | None  # the daemon's pid: the lock holder's, else the one status.json names
    process_exists: bool  # a process with ``pid`` exists
    is_daemon: bool  # and its command line is ``zos-upgrade ... daemon``
    lock_held: bool
    detail: str  # one sentence for the human view


def is_daemon_process(pid: int, *, proc: Path = PROC) -> bool | None:
    """True when ``pid``'s command line runs the zos-upgrade daemon; None when there is no such process."""
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:  # another user's process may hide its command line: it exists, we cannot tell
        return False
    words = [a.decode("utf-8", "replace") for a in argv if a]
    return _runs_our_cli(words) and "daemon" in words


def _runs_our_cli(words: list[str]) -> bool:
    """``.../zos-upgrade ...`` (the console script, also as ``python .../zos-upgrade``) or
    ``python -m zos_upgrade[.cli] ...``; a program that merely mentions us in an argument is not us."""
    for index, word in enumerate(words):
        if os.path.basename(word) == "zos-upgrade":
            return True
        if word == "-m" and index + 1 < len(words) and words[index + 1] in ("zos_upgrade", "zos_upgrade.cli"):
            return True
    return False


def check_daemon(state_dir: Path, recorded_pid: int | None, *, proc: Path = PROC) -> DaemonLiveness:
    """What is true of the daemon now (``recorded_pid``: the pid ``status.json`` names)."""
    try:
        holder = lock_holder(state_dir, proc_locks=proc / "locks")
    except ZosUpgradeError as exc:
        exists, ours = _probe(recorded_pid, proc)
        return DaemonLiveness("unknown", recorded_pid, exists, ours, False,
                              f"cannot tell whether the node lock is held ({exc})")
    pid = holder if holder else recorded_pid
    exists, ours = _probe(pid, proc)
    if holder is not None:
        if holder == 0:
            detail = "the node lock is held by a process of another pid namespace"
        elif ours:
            detail = f"pid {pid}, holds the node lock"
        else:
            detail = f"pid {pid} holds the node lock but its command line is not a zos-upgrade daemon's"
        return DaemonLiveness("running", pid, exists, ours, True, detail)
    if pid is None:
        return DaemonLiveness("stopped", None, False, False, False, "no daemon holds the node lock")
    if exists and ours:
        detail = f"pid {pid} is a zos-upgrade daemon but does not hold this node's lock (another state dir?)"
    elif exists:
        detail = f"last pid {pid} is now another program; no daemon holds the node lock"
    else:
        detail = f"last pid {pid} has exited; no daemon holds the node lock"
    return DaemonLiveness("stopped", pid, exists, ours, False, detail)


def _probe(pid: int | None, proc: Path) -> tuple[bool, bool]:
    if not pid:
        return False, False
    ours = is_daemon_process(pid, proc=proc)
    return ours is not None, bool(ours)
