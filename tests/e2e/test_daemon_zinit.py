"""The daemon on a zinit node (the 0-OS case): the zinit emulator speaking JSON-RPC on the node's
socket, the service files under ``<root>/etc/zinit``, a real hub; install, upgrade, rollback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.node import REPO_NAME, Sandbox, service_release, tree_digest
from tests.support.procs import REPO, zos_upgrade_cmd
from tests.support.zinit_emulator import running_zinit

STATE = "/var/cache/modules/upgrade"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    base = Path(tempfile.mkdtemp(prefix="zu-dz-", dir="/tmp"))  # short: the socket lives in it
    try:
        sandbox = Sandbox(base)
        with sandbox.serving_hub():
            yield sandbox
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _once(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ZOS_UPGRADE_CRASH_AT"}
    cmd = zos_upgrade_cmd("--log-format", "json", "daemon", "--config", str(config), "--once")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False, cwd=REPO, env=env)


def test_zinit_node_installs_upgrades_and_rolls_back(box: Sandbox) -> None:
    (box.root / "run").mkdir()
    with running_zinit(box.root, "jsonrpc", socket_path=box.root / "run/zinit.sock"):
        config = box.base / "zos-upgrade.toml"
        config.write_text(f"""
[node]
root = "{box.root}"
state_dir = "{STATE}"
[source]
hub = "{box.hub_url}"
flist = "{REPO_NAME}/zos:latest.fl"
[trust]
insecure = true
[supervisor]
kind = "zinit"
socket = "/run/zinit.sock"
protocol = "auto"
[upgrade]
self_update = false
probation = 0.5
stop_timeout = 3
""")
        for version in ("1.0.0", "1.1.0"):
            box.pack(f"zos:{version}.fl", service_release(box.root, version))
            box.link("zos:latest.fl", f"zos:{version}.fl")
            proc = _once(config)
            assert proc.returncode == 0, proc.stderr
            assert box.wait_version("alpha", version) == version
            assert box.wait_version("beta", version) == version
        assert (box.root / "etc/zinit/alpha.yaml").exists()  # zinit reads the release's service files
        before = tree_digest(box.root)
        box.pack("zos:1.2.0.fl", service_release(box.root, "1.2.0", crash=("alpha",)))
        box.link("zos:latest.fl", "zos:1.2.0.fl")
        proc = _once(config)
        assert proc.returncode == 1, proc.stderr
        status = json.loads((box.root / STATE.lstrip("/") / "status.json").read_text())
        assert status["last_result"] == "rolled-back" and status["current_version"] == "1.1.0"
        assert "alpha" in status["last_error"]
        assert tree_digest(box.root) == before
        assert box.wait_version("alpha", "1.1.0") == "1.1.0"
