"""`zos-upgrade daemon` on the command line: usage, config errors, the lock, crash points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.procs import zos_upgrade_cmd
from zos_upgrade.cli import cli
from zos_upgrade.upgrade.crash import CRASH_POINTS


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(zos_upgrade_cmd("--log-format", "json", "daemon", *args),
                          capture_output=True, text=True, timeout=timeout, check=False)


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "zos-upgrade.toml"
    path.write_text(body)
    return path


GOOD = """
[node]
root = "{root}"
state_dir = "/state"
[source]
hub = "http://127.0.0.1:9"
flist = "tf/zos:latest.fl"
[trust]
insecure = true
"""


def test_list_crash_points_prints_them_in_transaction_order() -> None:
    proc = _run("--list-crash-points")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == list(CRASH_POINTS)


def test_help_documents_the_exit_codes() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "75" in proc.stdout and "restart needed" in proc.stdout and "--once" in proc.stdout


def test_missing_config_is_a_usage_error() -> None:
    proc = _run("--once")
    assert proc.returncode == 2 and "--config" in proc.stderr


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[node]\nroot = '/'\n[source]\nhub = 'http://h'\nflist = 'a/b'\n[upgrade]\nprobaton = 3\n",
         "probaton"),
        ("[source]\nhub = 'http://h'\nflist = 'a/b'\ninterval = 'soon'\n", "interval"),
        ("[source]\nhub = 'ftp://h'\nflist = 'a/b'\n", "source.hub"),
        ("[source]\nflist = 'a/b'\n", "needs `hub`"),
        ("[source]\nhub = 'http://h'\nflist = 'a/b'\n[metrics]\nenabled = true\nhost = '0.0.0.0'\n",
         "loopback"),
        ("[source\n", "not valid TOML"),
    ],
)
def test_config_errors_exit_1_naming_the_problem(tmp_path: Path, body: str, expected: str) -> None:
    # in-process (the subprocess path is covered below): these fail before any lock or network
    result = CliRunner().invoke(cli, ["daemon", "--config", str(_config(tmp_path, body)), "--once"])
    assert result.exit_code == 1, result.output
    assert expected in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit with a message, not a traceback


def test_unreadable_config_exits_1(tmp_path: Path) -> None:
    proc = _run("--config", str(tmp_path / "absent.toml"), "--once")
    assert proc.returncode == 1 and "absent.toml" in proc.stderr


def test_second_daemon_is_refused_by_the_lock(tmp_path: Path) -> None:
    state = tmp_path / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys,time; from pathlib import Path; from zos_upgrade.lock import DaemonLock;"
         "DaemonLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)", str(state)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        proc = _run("--config", str(_config(tmp_path, GOOD.format(root=tmp_path))), "--once")
        assert proc.returncode == 1
        assert f"pid {holder.pid}" in proc.stderr and "daemon.lock" in proc.stderr
    finally:
        holder.kill()
        holder.wait()


def test_publisher_without_trusted_keys_exits_1(tmp_path: Path) -> None:
    body = f"[node]\nroot = '{tmp_path}'\nstate_dir = '/state'\n[source]\npublisher = 'http://127.0.0.1:9'\n"
    proc = _run("--config", str(_config(tmp_path, body)), "--once")
    assert proc.returncode == 1, proc.stderr
    assert "trusted_keys" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_trusted_key_file_exits_1_naming_it(tmp_path: Path) -> None:
    body = (f"[node]\nroot = '{tmp_path}'\nstate_dir = '/state'\n[source]\n"
            "publisher = 'http://127.0.0.1:9'\ntrusted_keys = ['/etc/zu/release.pub']\n")
    proc = _run("--config", str(_config(tmp_path, body)), "--once")
    assert proc.returncode == 1, proc.stderr
    assert str(tmp_path / "etc/zu/release.pub") in proc.stderr and "Traceback" not in proc.stderr
