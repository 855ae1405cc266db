"""`zos-upgrade demo` as a user runs it: a child process, exit 0, the summary, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from tests.support.procs import REPO, zos_upgrade_cmd
from tests.support.subreaper import descendants, kill_descendants, reaped_cmd


def _demo_cmd(report: Path) -> list[str]:
    """The demo, run under the subreaper: what it leaves running is reported, whoever else runs demos."""
    return reaped_cmd(report, zos_upgrade_cmd("demo"))


def _sandbox(out: str) -> Path:
    """The sandbox this very demo made: its first line names it."""
    match = re.search(r"^sandbox (/\S+)$", out, re.MULTILINE)
    assert match is not None, f"the demo did not name its sandbox:\n{out}"
    return Path(match.group(1))


def _left_running(report: Path) -> dict[str, str]:
    """What the demo left running when it exited (pid -> command line), as the subreaper found it."""
    left: dict[str, str] = json.loads(report.read_text())
    return left


def test_demo_upgrades_rolls_back_prints_the_summary_and_cleans_up(tmp_path: Path) -> None:
    report = tmp_path / "left-running.json"
    env = {k: v for k, v in os.environ.items() if k != "ZOS_UPGRADE_CRASH_AT"}
    proc = subprocess.run(_demo_cmd(report), capture_output=True, text=True, timeout=110, cwd=REPO,
                          env=env, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    flat = " ".join(out.split())  # long messages wrap
    assert "demo passed" in flat
    # the story, step by step
    assert "daemon --once installed 1.0.0; services answer: web 1.0.0, worker 1.0.0" in flat
    assert "daemon upgraded to 1.1.0: web answers 1.1.0, worker answers 1.1.0" in flat
    assert "settings migrated to json" in flat
    assert "rolled back: web answers 1.1.0, worker answers 1.1.0" in flat
    assert "forged 9.9.9 refused by TUF (ForgedMetadata): the node still runs 1.1.0" in flat
    assert "why: forged metadata (arbitrary software)" in flat
    assert "daemon stopped by SIGTERM (exit 0)" in flat
    # the summary: one row per step, and the phases of the transactions
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 7}
    assert "0.0.0 -> 1.0.0" in rows["first install"] and "installed" in rows["first install"]
    assert "1.0.0 -> 1.1.0" in rows["upgrade"] and "upgraded" in rows["upgrade"]
    assert "1.1.0 -> 1.2.0" in rows["broken release"] and "rolled back" in rows["broken release"]
    assert "1.1.0 -> 9.9.9" in rows["forged release"] and "refused" in rows["forged release"]
    # a rolled-back transaction still reports what it downloaded and the phases it went through
    broken_cells = [c.strip() for c in rows["broken release"].split("│")]
    assert broken_cells[4].endswith("iB") and broken_cells[6] != "-", broken_cells
    assert "broken release 1.2.0" in out
    # the upgrade downloads far less than the release: the unchanged 2 MiB asset is reused
    upgrade_cells = [c.strip() for c in rows["upgrade"].split("│")]
    assert upgrade_cells[4].endswith("KiB") and upgrade_cells[5].endswith("MiB")
    for phase in ("fetch", "apply", "migrate", "restart", "probation", "commit"):
        assert any(line.strip("│ ").startswith(phase) for line in out.splitlines()), phase
    # nothing left behind: no process, no sandbox
    assert _left_running(report) == {}
    assert not _sandbox(out).exists()


def test_demo_interrupted_mid_upgrade_stops_everything_it_started(tmp_path: Path) -> None:
    report = tmp_path / "left-running.json"
    env = {k: v for k, v in os.environ.items() if k != "ZOS_UPGRADE_CRASH_AT"}
    # the subreaper forwards the Ctrl-C to the demo, and keeps whatever the demo orphans findable
    proc = subprocess.Popen(_demo_cmd(report), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=REPO, env=env)
    seen = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen += line
            if "release 1.1.0 packed" in line:  # hub, supervisord, services and the daemon all run now
                break
        else:
            raise AssertionError("the demo ended before publishing 1.1.0")
        running = descendants(proc.pid)
        sandbox = str(_sandbox(seen))
        assert any(sandbox in cmdline for cmdline in running.values()), (
            f"expected the demo's children (working in {sandbox}) to be running, found {running}"
        )
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest = proc.stdout.read()
        assert proc.wait(30) == 130
        assert "interrupted" in rest
    finally:
        if proc.poll() is None:
            kill_descendants(proc.pid)
            proc.kill()
            proc.wait()
    assert _left_running(report) == {}
    assert not _sandbox(seen).exists()
