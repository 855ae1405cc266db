"""The demo's child processes: the hub, a real supervisord, the daemon. Each runs in its own session
and is stopped by its own process group, so nothing the demo started outlives it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.supervisor import SupervisorError
from zos_upgrade.supervisor.supervisord import SupervisordClient

__all__ = [
    "Children",
    "DemoFailed",
    "free_port",
    "kill_supervisord",
    "supervisord_config",
    "wait_for",
    "wait_for_port",
    "zos_upgrade_cmd",
]


class DemoFailed(ZosUpgradeError):
    """A step of the demo did not do what it should."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def zos_upgrade_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "zos_upgrade.cli", "--log-format", "json", *args]


def supervisord_config(sock: Path, run_dir: Path, include_dir: Path) -> str:
    return (
        f"[unix_http_server]\nfile={sock}\nchmod=0700\n\n"
        f"[supervisord]\nnodaemon=true\nlogfile={run_dir}/supervisord.log\n"
        f"pidfile={run_dir}/supervisord.pid\nchildlogdir={run_dir}\nloglevel=info\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[include]\nfiles = {include_dir}/*.conf\n"
    )


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def _supervised_pids(sock: Path, include_dir: Path) -> list[int]:
    """The pid of every program supervisord runs now (each leads its own process group)."""

    async def pids() -> list[int]:
        client = SupervisordClient(sock, include_dir=include_dir, timeout=3)
        return [(await client.status(name)).pid for name in await client.list()]

    with contextlib.suppress(SupervisorError, OSError):
        return [pid for pid in asyncio.run(pids()) if pid]
    return []


def kill_supervisord(proc: subprocess.Popen[bytes], sock: Path, include_dir: Path) -> None:
    """SIGKILL supervisord, then every program it ran. In that order: supervisord restarts a program it
    sees die (autorestart), and a program started in its own group after it was listed outlived the
    demo now and then when the programs went first."""
    supervised = _supervised_pids(sock, include_dir)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)
    for pid in supervised:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


class Children:
    """Every process the demo started, stopped in reverse order by :meth:`stop_all`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        self._supervisord: tuple[Path, Path] | None = None

    def start(self, name: str, cmd: list[str], *, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_all
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self._procs.append((name, proc, log))
        return proc

    def start_supervisord(self, conf: Path, sock: Path, include_dir: Path) -> None:
        proc = self.start("supervisord", [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
                          cwd=conf.parent)
        self._supervisord = (sock, include_dir)
        wait_for(lambda: sock.exists(), 20, "supervisord to open its socket", proc)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        stop_group(proc)

    def stop_all(self) -> None:
        for name, proc, log in reversed(self._procs):
            if name == "supervisord" and self._supervisord is not None and proc.poll() is None:
                kill_supervisord(proc, *self._supervisord)
            stop_group(proc)
            log.close()
        self._procs.clear()


def wait_for(cond: object, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
             interval: float = 0.1) -> None:
    """Poll ``cond()`` until true; DemoFailed naming ``what`` after ``timeout`` seconds."""
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if cond():
                return
        if proc is not None and proc.poll() is not None:
            raise DemoFailed(f"waiting for {what}: the process exited with status {proc.returncode}")
        time.sleep(interval)
    raise DemoFailed(f"waited {timeout:g}s for {what}; it did not happen")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True

    wait_for(listening, timeout, f"a server on 127.0.0.1:{port}", proc)
