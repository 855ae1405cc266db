"""Run a REAL supervisord (the ``supervisor`` package from PyPI) for a test, in its own temp dir.

It listens on its own unix socket, includes ``<dir>/programs/*.conf`` (where
``SupervisordClient.install_config`` writes ``[program:x]`` files), and is stopped at the end with
SIGKILL, then its programs (the demo's ``kill_supervisord``: in that order, so supervisord cannot
restart one behind the kill), then anything still running a configured command.
Its log goes to its log file only (``silent``): in the foreground it would also echo it to stdout,
an unread pipe here, and stop answering once that pipe is full (about 64 KiB of log: a few hundred
service starts and stops, as the fault suite's campaigns do).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import kill_running
from tests.support.zinit_emulator import wait_for_unix_socket
from zos_upgrade.demo.processes import kill_supervisord

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
            kill_supervisord(proc, sock, base / "programs")  # supervisord first, then its programs
        # a program supervisord no longer tracked (its config replaced mid-test) would outlive the
        # test: any process still running a configured command goes too
        for conf in (base / "programs").glob("*.conf"):
            for line in conf.read_text(errors="replace").splitlines():
                if line.startswith("command"):
                    kill_running(line.split("=", 1)[1].strip().replace("%%", "%"))
        if proc.stdout:
            proc.stdout.close()
        shutil.rmtree(base, ignore_errors=True)
