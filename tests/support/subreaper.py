"""Run a command so that every process it starts stays ours to find, even once orphaned.

``python subreaper.py REPORT -- CMD...`` makes itself a child subreaper (Linux ``prctl``), runs CMD,
forwards SIGINT and SIGTERM to it, and waits. A process CMD started and lost (its parent died, or
it double-forked into a new session) is reparented to this wrapper instead of to init, so it is
still one of the wrapper's descendants. When CMD exits, the descendants still running are written
to REPORT as JSON (``{pid: command line}``), then killed and reaped, and the wrapper exits with
CMD's status. A test thereby counts only the processes it started, never the rest of the machine.

Run by path (stdlib only): ``[sys.executable, SCRIPT, report, "--", *cmd]``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

__all__ = ["SCRIPT", "descendants", "kill_descendants", "reaped_cmd"]

SCRIPT = Path(__file__).resolve()
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
_GONE_STATES = ("Z", "X")  # exited: a zombie waiting for its parent, or dead


def reaped_cmd(report: Path, cmd: list[str]) -> list[str]:
    """The command line that runs ``cmd`` under this wrapper, reporting leftovers to ``report``."""
    return [sys.executable, str(SCRIPT), str(report), "--", *cmd]


def _parent_and_state(pid: str) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # exited while we looked
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    return int(ppid), state


def descendants(root: int) -> dict[int, str]:
    """The running (not exited) descendants of process ``root``: pid -> command line."""
    children: dict[int, list[int]] = {}
    running: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        found = _parent_and_state(entry)
        if found is None:
            continue
        ppid, state = found
        children.setdefault(ppid, []).append(int(entry))
        if state not in _GONE_STATES:
            running.add(int(entry))
    out: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if pid in running:
            out[pid] = _cmdline(pid)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def kill_descendants(root: int) -> None:
    """SIGKILL every running descendant of ``root`` (a test's cleanup after a failure)."""
    for pid in descendants(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _reap_adopted(timeout: float = 10.0) -> None:
    """Collect every child this wrapper has (CMD's orphans were reparented to it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print(f"usage: {argv[0]} REPORT -- CMD...", file=sys.stderr)
        return 2
    report, cmd = Path(argv[1]), argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    child = subprocess.Popen(cmd)

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    status = child.wait()
    left = descendants(os.getpid())
    report.write_text(json.dumps({str(pid): cmdline for pid, cmdline in left.items()}))
    kill_descendants(os.getpid())
    _reap_adopted()
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
