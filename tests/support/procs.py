"""Start real servers as child processes on free loopback ports, and stop them by their own process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from zos_upgrade.demo.processes import free_port
from zos_upgrade.demo.processes import stop_group as stop_process

__all__ = ["REPO", "alive", "free_port", "serving", "stop_process", "wait_for_port", "zos_upgrade_cmd"]

REPO = Path(__file__).resolve().parents[2]


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> None:
    """Block until something accepts connections on ``port`` (fail early if ``proc`` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode} before listening on {port}:\n{_output(proc)}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def zos_upgrade_cmd(*args: str) -> list[str]:
    """The command line that runs our CLI with this interpreter."""
    return [sys.executable, "-m", "zos_upgrade.cli", *args]


@contextlib.contextmanager
def serving(cmd: Sequence[str], port: int, *, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` (which must listen on ``port``) for the duration of the block.

    The child's output goes to an unlinked temp file, not a pipe: a chatty server would stall once a
    pipe nobody reads is full.
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env={**os.environ, **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _LOGS[proc.pid] = log
        try:
            wait_for_port(port, proc)
            yield proc
        finally:
            stop_process(proc)
            _LOGS.pop(proc.pid, None)


_LOGS: dict[int, IO[bytes]] = {}


def _output(proc: subprocess.Popen[bytes]) -> str:
    """What a child started by :func:`serving` has printed so far."""
    log = _LOGS.get(proc.pid)
    if log is not None:
        log.seek(0)
        return log.read()[-20000:].decode(errors="replace")
    return proc.stdout.read().decode(errors="replace") if proc.stdout else ""


def pids_running(fragment: str, *, parent: int | None = None) -> list[int]:
    """Live (not zombie) processes whose command line contains ``fragment``, optionally only the
    children of ``parent``, found by reading /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")
            state, ppid = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if fragment.encode() in cmdline and state != "Z" and (parent is None or int(ppid) == parent):
            found.append(int(name))
    return found


def alive(pid: int) -> bool:
    """Process ``pid`` exists and has not exited (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def kill_running(fragment: str) -> None:
    """SIGKILL every process whose command line contains ``fragment`` (what a test left behind)."""
    for pid in pids_running(fragment):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
