"""Run a REAL supervisord (the ``supervisor`` package from PyPI) for a test, in its own temp dir.

It listens on its own unix socket, includes ``<dir>/programs/*.conf`` (where
``SupervisordClient.install_config`` writes ``[program:x]`` files), and is stopped by its own process
at the end — its children first with SIGKILL, so a program that ignores SIGTERM cannot slow teardown.
Its log goes to its log file only (``silent``): in the foreground it would also echo it to stdout,
an unread pipe here, and stop answering once that pipe is full (about 64 KiB of log: a few hundred
service starts and stops, as the fault suite's campaigns do).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import kill_running, stop_process
from tests.support.zinit_emulator import wait_for_unix_socket
from zos_upgrade.supervisor import SupervisorError
from zos_upgrade.supervisor.supervisord import SupervisordClient

CONFIG = """\
[unix_http_server]
file={sock}
chmod=0700

[supervisord]
nodaemon=true
silent=true
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}/logs
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[include]
files = {dir}/programs/*.conf
"""


@dataclass(frozen=True)
class RunningSupervisord:
    dir: Path
    socket_path: Path
    include_dir: Path
    process: subprocess.Popen[bytes]


def _kill_children(socket_path: Path, include_dir: Path) -> None:
    async def pids() -> list[int]:
        client = SupervisordClient(socket_path, include_dir=include_dir, timeout=5)
        return [(await client.status(name)).pid for name in await client.list()]

    with contextlib.suppress(SupervisorError):
        for pid in asyncio.run(pids()):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_supervisord() -> Iterator[RunningSupervisord]:
    """A supervisord for the duration of the block (a short temp dir: socket paths are limited)."""
    base = Path(tempfile.mkdtemp(prefix="zu-sd-", dir="/tmp"))
    (base / "programs").mkdir()
    (base / "logs").mkdir()
    sock = base / "supervisor.sock"
    conf = base / "supervisord.conf"
    conf.write_text(CONFIG.format(sock=sock, dir=base))
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
        cwd=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for_unix_socket(sock, proc, timeout=20)
        yield RunningSupervisord(dir=base, socket_path=sock, include_dir=base / "programs", process=proc)
    finally:
        if proc.poll() is None:
            _kill_children(sock, base / "programs")
        stop_process(proc)
        # a program supervisord no longer tracked (its config replaced mid-test, or restarted behind
        # our kill) would outlive the test: any process still running a configured command goes too
        for conf in (base / "programs").glob("*"):
            for line in conf.read_text(errors="replace").splitlines():
                if line.startswith("command"):
                    kill_running(line.split("=", 1)[1].strip().replace("%%", "%"))
        if proc.stdout:
            proc.stdout.close()
        shutil.rmtree(base, ignore_errors=True)
