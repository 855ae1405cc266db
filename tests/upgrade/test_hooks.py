"""Hooks: run from the release tree with the node's context; refused when unsafe; killed when hanging."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.support.procs import alive
from zos_upgrade.upgrade.errors import HookFailed
from zos_upgrade.upgrade.hooks import run_hook

ENV = {"ZOS_ROOT": "/node", "ZOS_FROM_VERSION": "1.0.0", "ZOS_TO_VERSION": "1.1.0"}


def hook(tree: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = tree / name
    path.write_text(body)
    path.chmod(mode)
    return path


def test_absent_hook_is_skipped(tmp_path: Path) -> None:
    assert asyncio.run(run_hook(tmp_path, "migrate", env=ENV, timeout=5)) is False


def test_hook_runs_in_the_tree_with_root_and_versions(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    line = 'echo "$ZOS_ROOT $ZOS_FROM_VERSION $ZOS_TO_VERSION $ZOS_HOOK $PWD"'
    hook(tmp_path, "migrate", f"#!/bin/sh\n{line} > {out}\n")
    assert asyncio.run(run_hook(tmp_path, "migrate", env=ENV, timeout=5)) is True
    assert out.read_text().split() == ["/node", "1.0.0", "1.1.0", "migrate", str(tmp_path)]


def test_non_executable_hook_fails(tmp_path: Path) -> None:
    hook(tmp_path, "pre-copy", "#!/bin/sh\n", mode=0o644)
    with pytest.raises(HookFailed, match="not executable"):
        asyncio.run(run_hook(tmp_path, "pre-copy", env=ENV, timeout=5))


def test_symlink_hook_is_refused(tmp_path: Path) -> None:
    os.symlink("/bin/true", tmp_path / "post-copy")
    with pytest.raises(HookFailed, match="not a regular file"):
        asyncio.run(run_hook(tmp_path, "post-copy", env=ENV, timeout=5))


def test_failing_hook_reports_status_and_output(tmp_path: Path) -> None:
    hook(tmp_path, "post-start", "#!/bin/sh\necho cannot convert data >&2\nexit 4\n")
    with pytest.raises(HookFailed, match="exited with status 4: cannot convert data"):
        asyncio.run(run_hook(tmp_path, "post-start", env=ENV, timeout=5))


def test_hanging_hook_and_its_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hook(tmp_path, "migrate", f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    started = time.monotonic()
    with pytest.raises(HookFailed, match=r"still running after 0\.5s; killed"):
        asyncio.run(run_hook(tmp_path, "migrate", env=ENV, timeout=0.5))
    assert time.monotonic() - started < 5
    child = int(pidfile.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the hook's child survived the timeout")



def _gone_soon(pid: int) -> bool:
    for _ in range(50):
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_a_background_child_holding_stdout_does_not_make_the_hook_time_out(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the child inherits stdout: waiting for the pipe's EOF would wait the whole 30 s
    hook(tmp_path, "post-copy", f"#!/bin/sh\necho converting\nsleep 30 &\necho $! > {pidfile}\n")
    started = time.monotonic()
    assert asyncio.run(run_hook(tmp_path, "post-copy", env=ENV, timeout=5)) is True
    assert time.monotonic() - started < 3
    assert _gone_soon(int(pidfile.read_text())), "the hook's background child outlived the step"


def test_children_that_left_the_session_are_killed_at_the_end_of_the_step(tmp_path: Path) -> None:
    setsid_pid, double_fork_pid = tmp_path / "setsid.pid", tmp_path / "double.pid"
    body = (
        "#!/bin/sh\n"
        f"setsid sh -c 'echo $$ > {setsid_pid}; exec sleep 30' >/dev/null 2>&1 < /dev/null &\n"
        # a classic daemon: fork, setsid, fork again, the middle one exits; no fd kept
        f"setsid sh -c '(echo $$ > /dev/null; sh -c \"echo \\$\\$ > {double_fork_pid}; exec sleep 30\" &)' "
        ">/dev/null 2>&1 < /dev/null\n"
        f"while [ ! -s {setsid_pid} ] || [ ! -s {double_fork_pid} ]; do sleep 0.01; done\n"
        "echo started daemons\n"
    )
    hook(tmp_path, "migrate", body)
    assert asyncio.run(run_hook(tmp_path, "migrate", env=ENV, timeout=5)) is True
    for pidfile in (setsid_pid, double_fork_pid):
        pid = int(pidfile.read_text())
        assert _gone_soon(pid), f"{pidfile.name}: process {pid} outlived the hook's step"


def test_leftovers_of_a_failing_hook_are_killed_and_its_output_reported(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    body = (f"#!/bin/sh\nsetsid sh -c 'echo $$ > {pidfile}; exec sleep 30' &\n"
            f"while [ ! -s {pidfile} ]; do sleep 0.01; done\necho no room for the index >&2\nexit 3\n")
    hook(tmp_path, "pre-copy", body)
    with pytest.raises(HookFailed, match="exited with status 3: no room for the index"):
        asyncio.run(run_hook(tmp_path, "pre-copy", env=ENV, timeout=5))
    assert _gone_soon(int(pidfile.read_text()))


def test_endless_output_is_kept_bounded(tmp_path: Path) -> None:
    hook(tmp_path, "migrate", "#!/bin/sh\nhead -c 5000000 /dev/zero | tr '\\0' x\necho; echo END\nexit 1\n")
    with pytest.raises(HookFailed, match=r"exited with status 1: x*\s*END$") as failed:
        asyncio.run(run_hook(tmp_path, "migrate", env=ENV, timeout=5))
    assert len(str(failed.value)) < 1000
