"""Hooks that leave children (issue 16 item 9): real hub subprocess, real supervisord, real shell hooks.

Release 1.1.0's ``post-copy`` backgrounds a ``sleep`` that keeps the hook's stdout open and starts a
daemon that calls ``setsid``. The transaction must not wait for the inherited pipe (no timeout, no
rollback: it commits), and nothing the hook started may still run once its step is over.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.e2e.upgrading import install
from tests.support.node import Exe, Sandbox, leftovers, service_release
from tests.support.procs import alive
from tests.support.supervisord import RunningSupervisord
from zos_upgrade.upgrade import UpgradeReport
from zos_upgrade.upgrade.hooks import HOOK_MARKER

POST_COPY = Exe(
    "#!/bin/sh\n"
    'run="$ZOS_ROOT/run"; mkdir -p "$run"\n'
    'sleep 30 &\necho $! > "$run/holder.pid"\n'  # inherits stdout: the pipe stays open 30 s
    """setsid sh -c 'echo $$ > "$ZOS_ROOT/run/daemon.pid"; exec sleep 30' >/dev/null 2>&1 </dev/null &\n"""
    'while [ ! -s "$run/daemon.pid" ]; do sleep 0.01; done\n'
    "echo converted\n"
)



def _marked_processes(root: Path) -> list[int]:
    """Processes still carrying a marker of a hook run on this node (none may outlive its step)."""
    node = f"ZOS_ROOT={root}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name)):
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
                if node in env and any(v.startswith(HOOK_MARKER.encode() + b"=") for v in env):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_hook_leaving_children_commits_and_its_children_are_gone(
    box: Sandbox, sd: RunningSupervisord
) -> None:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra={"post-copy": POST_COPY}))
    started = time.monotonic()
    report = asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl", hook_timeout=8.0))
    assert isinstance(report, UpgradeReport) and report.to_version == "1.1.0"  # committed, no rollback
    assert report.phases["post-copy"] < 4, report.phases
    assert time.monotonic() - started < 20
    for name in ("holder", "daemon"):
        pid = int((box.root / "run" / f"{name}.pid").read_text())
        deadline = time.monotonic() + 2
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(pid), f"the hook's {name} process {pid} outlived the transaction"
    assert _marked_processes(box.root) == []
    assert box.wait_version("beta", "1.1.0") == "1.1.0"
    assert leftovers(box) == []
