"""The real 0-OS tools built by ``make tools`` (tools/build_upstream.py): where they are, and real
``zdb`` and 0-hub processes on free loopback ports, stopped by their own PID.

A machine without the tools skips their tests with a message saying ``make tools``; under CI (the
``CI`` environment variable set) the same absence is a failure, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from tests.support.procs import REPO, free_port, stop_process, wait_for_port

__all__ = ["HubProcess", "ZdbServer", "running_0hub", "running_zdb", "tool"]

MANIFEST = REPO / ".cache" / "upstream" / "tools.json"


def _missing(what: str) -> None:
    message = f"{what}: run `make tools` to build the real 0-db, zflist and 0-hub"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: these tests must run, not skip)")
    pytest.skip(message)


def tool(name: str) -> Path:
    """The path of a built tool (``zdb``, ``zflist``, ``hub_src``, ``hub_python``)."""
    try:
        manifest: dict[str, Any] = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        _missing(f"no {MANIFEST}")
        raise AssertionError("unreachable") from None
    path = Path(manifest.get(name, ""))
    if not manifest.get(name) or not path.exists():
        _missing(f"{name} is not built ({path})")
    return path


@dataclass
class ZdbServer:
    """One real ``zdb --mode user`` process."""

    port: int
    proc: subprocess.Popen[bytes]
    root: Path

    def url(self, namespace: str = "default", password: str | None = None) -> str:
        auth = f":{password}@" if password else ""
        return f"zdb://{auth}127.0.0.1:{self.port}/{namespace}"

    def command(self, *args: str | int) -> Any:
        """One command on a fresh RESP2 connection (0-db knows no HELLO), as its admin."""
        with redis.Redis(host="127.0.0.1", port=self.port, protocol=2, socket_timeout=10) as client:
            return client.execute_command(*args)

    def namespace(self, name: str, password: str | None = None, *, public: bool = True,
                  maxsize: int | None = None) -> str:
        """Create namespace ``name`` (optionally with a password, private, bounded); its URL."""
        self.command("NSNEW", name)
        if password is not None:
            self.command("NSSET", name, "password", password)
        if not public:
            self.command("NSSET", name, "public", 0)
        if maxsize is not None:
            self.command("NSSET", name, "maxsize", maxsize)
        return self.url(name, password)

    def stop(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def running_zdb(root: Path) -> Iterator[ZdbServer]:
    """A real zdb whose data and index live under ``root``."""
    binary = tool("zdb")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [str(binary), "--listen", "127.0.0.1", "--port", str(port), "--mode", "user",
             "--data", str(root / "data"), "--index", str(root / "index")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            try:
                wait_for_port(port, proc)
            except RuntimeError:
                raise RuntimeError(f"zdb did not start: {_tail(log)}") from None
            yield ZdbServer(port, proc, root)
        finally:
            stop_process(proc)


@dataclass
class HubProcess:
    """The real 0-hub (Flask) serving ``public``, with a zdb backend."""

    port: int
    proc: subprocess.Popen[bytes]
    public: Path  # the users' folders: <public>/<user>/<name>.flist

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


_HUB_CONFIG = """\
config = {{
    'backend-internal-host': '127.0.0.1',
    'backend-internal-port': {zdb_port},
    'backend-internal-pass': '',
    'backend-internal-name': 'default',
    'backend-public-host': '127.0.0.1',
    'backend-public-port': {zdb_port},
    'backend-public-name': 'default',
    'public-website': 'http://127.0.0.1:{port}',
    'listen-addr': '127.0.0.1',
    'listen-port': {port},
    'ignored-files': ['.', '..', '.keep'],
    'official-repositories': [],
    'zflist-bin': {zflist!r},
    'userdata-root-path': {userdata!r},
    'workdir-root-path': {workdir!r},
    'public-directory': {public!r},
    'readonly': False,
    'authentication': False,
    'guest-token': None,
    'debug': False,
}}
"""


@contextlib.contextmanager
def running_0hub(root: Path, zdb: ZdbServer, public: Path | None = None) -> Iterator[HubProcess]:
    """The real 0-hub as a child process on a free port: authentication off (every request is the
    user ``Administrator``), ``zdb`` as its backend, ``public`` (default ``root/public/users``) as
    its storage folder."""
    src, python, zflist = tool("hub_src"), tool("hub_python"), tool("zflist")
    port = free_port()
    conf = root / "hub-config"
    conf.mkdir(parents=True, exist_ok=True)
    public = public or root / "public" / "users"
    public.mkdir(parents=True, exist_ok=True)
    (conf / "config.py").write_text(_HUB_CONFIG.format(
        zdb_port=zdb.port, port=port, zflist=str(zflist), userdata=str(root / "public"),
        workdir=str(root / "workdir"), public=str(public),
    ))
    # config.py is imported by name: our folder on PYTHONPATH, the hub's own sources untouched
    env = {**os.environ, "PYTHONPATH": str(conf), "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [str(python), str(src / "flist-uploader.py")], cwd=src, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            try:
                wait_for_port(port, proc, timeout=60)
            except (RuntimeError, TimeoutError):
                raise RuntimeError(f"0-hub did not start: {_tail(log)}") from None
            yield HubProcess(port, proc, public)
        finally:
            stop_process(proc)


def _tail(log: IO[bytes]) -> str:
    """The last lines a child wrote to its log file."""
    log.seek(0)
    return log.read()[-4000:].decode(errors="replace")


def wait_until(check: Any, timeout: float = 10.0) -> None:
    """Poll ``check()`` until it is true (a zdb replica coming back, say)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{check} still false after {timeout}s")
        time.sleep(0.05)
