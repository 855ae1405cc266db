from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from zos_upgrade import __version__
from zos_upgrade.cli import cli


def test_version_and_help() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for group in ("flist", "hub", "release", "daemon", "status", "demo"):
        assert group in result.output
    assert "Exit codes" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2


def test_console_script_runs_and_logs_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "zos_upgrade.cli", "--log-format", "json", "--version"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(__version__)


def test_json_log_lines_carry_fields(capsys: object) -> None:
    import logging

    from zos_upgrade.log import setup_logging

    setup_logging("json")
    logging.getLogger("t").info("hello", extra={"version": "1.2.3"})
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    doc = json.loads(err.strip().splitlines()[-1])
    assert doc["msg"] == "hello" and doc["version"] == "1.2.3" and doc["level"] == "info"
