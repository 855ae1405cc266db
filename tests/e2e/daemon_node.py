"""A sandbox node run by the real `zos-upgrade daemon`: a real hub, a real supervisord, a TOML config.

The ``node`` fixture (tests/e2e/conftest.py) builds one; the daemon, status, check, hold, install,
rollback and recovery tests drive it from outside as an operator would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.node import REPO_NAME, Sandbox, service_release
from tests.support.procs import REPO, zos_upgrade_cmd
from tests.support.supervisord import RunningSupervisord, running_supervisord

__all__ = ["LINK", "STATE", "Node", "clean_env", "sandbox_node", "wait_for"]

LINK = f"{REPO_NAME}/zos:latest.fl"
STATE = "/var/cache/modules/upgrade"


@dataclass
class Node:
    box: Sandbox
    sd: RunningSupervisord
    config: Path

    @property
    def root(self) -> Path:
        return self.box.root

    @property
    def state(self) -> Path:
        return self.root / STATE.lstrip("/")

    def write_config(self, source: str = "", upgrade: str = "", trust: str = "insecure = true") -> Path:
        src = source or f'hub = "{self.box.hub_url}"\nflist = "{LINK}"\n'
        self.config.write_text(f"""
[node]
root = "{self.root}"
state_dir = "{STATE}"
[source]
{src}interval = 0.5
jitter = 0
[supervisor]
kind = "supervisord"
socket = "/sup/supervisor.sock"
include_dir = "/sup/conf.d"
[upgrade]
self_update = false
probation = 0.3
stop_timeout = 3
hook_timeout = 10
{upgrade}
[trust]
{trust}
""")
        return self.config

    def once(self, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(zos_upgrade_cmd("--log-format", "json", "daemon", "--config", str(self.config),
                                              "--once"),
                              capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
                              env=clean_env())

    def start(self) -> subprocess.Popen[bytes]:
        """The daemon, following its source; its log goes to a file (a full pipe would block it)."""
        with open(self.box.base / "daemon.log", "ab") as log:
            return subprocess.Popen(
                zos_upgrade_cmd("--log-format", "json", "daemon", "--config", str(self.config)),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO, env=clean_env())

    def status(self) -> dict[str, Any]:
        return dict(json.loads((self.state / "status.json").read_text()))

    def release(self, version: str, **kw: Any) -> None:
        self.box.pack(f"zos:{version}.fl", service_release(self.root, version, **kw))
        self.box.link("zos:latest.fl", f"zos:{version}.fl")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ZOS_UPGRADE_CRASH_AT"}



def wait_for(cond: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")



@contextmanager
def sandbox_node(hub_config: str | None = None) -> Iterator[Node]:
    # a short base: supervisord's unix socket path must stay under ~100 characters
    base = Path(tempfile.mkdtemp(prefix="zu-dm-", dir="/tmp"))
    try:
        box = Sandbox(base)
        with box.serving_hub(hub_config), running_supervisord() as sd:
            box.expose_supervisor(sd.socket_path, sd.include_dir)
            n = Node(box, sd, base / "zos-upgrade.toml")
            n.write_config()
            yield n
    finally:
        shutil.rmtree(base, ignore_errors=True)
