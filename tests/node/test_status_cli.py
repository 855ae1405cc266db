"""`zos-upgrade status`: the at-a-glance view, its JSON twin, and what it does with broken files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from click.testing import CliRunner

from tests.support.procs import zos_upgrade_cmd
from zos_upgrade.cli import cli
from zos_upgrade.cli.status import collect_status, render_text
from zos_upgrade.hub.models import FlistInfo
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.events import FListEvent
from zos_upgrade.node.state import DaemonState, UpgradeRecord, write_state

MD5 = "0123456789abcdef0123456789abcdef"
STATE = "var/cache/modules/upgrade"


def make_node(root: Path) -> None:
    boot = Boot(root)
    boot.set(FListEvent("tf-zos", FlistInfo(name="zos:latest.flist", size=1, updated=1, type="symlink",
                                            md5=MD5, target="zos:v3.1.2.flist")))
    boot.set_bins({
        "tf-zos-bins/zinit.flist": FlistInfo(name="zinit.flist", size=1, updated=2, type="symlink", md5=MD5,
                                             target="zinit:0.2.14.flist"),
        "tf-zos-bins/tools.flist": FlistInfo(name="tools.flist", size=1, updated=3, type="regular", md5=MD5),
    })


def test_text_view_of_a_node_the_daemon_never_ran_on(tmp_path: Path) -> None:
    make_node(tmp_path)
    result = CliRunner().invoke(cli, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "boot method:    flist" in out
    assert "tf-zos/zos:latest.flist -> tf-zos/zos:v3.1.2.flist" in out and "boot version:   3.1.2" in out
    assert "installed bins: 2" in out and "tf-zos-bins/zinit.flist  0.2.14" in out
    assert "tf-zos-bins/tools.flist  no version" in out
    assert "has not run here yet" in out


def test_json_view_with_daemon_state(tmp_path: Path) -> None:
    make_node(tmp_path)
    write_state(tmp_path / STATE, DaemonState(
        updated=1000.0, pid=7, current_version="3.1.2", last_check=990.0, last_result="rolled-back",
        last_error="service foo did not stay up",
        last_upgrade=UpgradeRecord(from_version="3.1.1", to_version="3.1.2", started=900.0, duration=3.0),
    ))
    result = CliRunner().invoke(cli, ["status", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["boot_method"] == "flist" and doc["boot_version"] == "3.1.2"
    assert [b["name"] for b in doc["bins"]] == ["tf-zos-bins/tools.flist", "tf-zos-bins/zinit.flist"]
    assert doc["bins"][1]["version"] == "0.2.14" and doc["bins"][0]["version"] is None
    assert doc["daemon"]["last_result"] == "rolled-back" and doc["daemon"]["last_upgrade"]["from"] == "3.1.1"
    assert doc["boot_error"] is None and doc["daemon_error"] is None


def test_text_shows_last_check_age_and_error(tmp_path: Path) -> None:
    make_node(tmp_path)
    state = DaemonState(updated=20000.0, last_check=20000.0 - 3 * 3600, last_result="error",
                        last_error="hub unreachable")
    write_state(tmp_path / STATE, state)
    text = render_text(collect_status(tmp_path, tmp_path / STATE), now=20000.0)
    assert "last check:     1970-01-01 02:33:20 UTC (3h ago)" in text
    assert "last result:    error" in text and "last error:     hub unreachable" in text


def test_broken_files_are_shown_not_fatal(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / "flist.name").write_text("tf-zos/zos:latest.flist")
    (tmp / "flist.info").write_bytes(b"\x00\xffgarbage")
    (tmp / "bins.info").write_text("[1, 2]")
    (tmp_path / STATE).mkdir(parents=True)
    (tmp_path / STATE / "status.json").write_text("{")
    result = CliRunner().invoke(cli, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "boot flist:     unknown (boot flist info file" in result.output
    assert "installed bins: unknown (installed packages file" in result.output
    assert "daemon state:   unreadable" in result.output
    doc = json.loads(CliRunner().invoke(cli, ["status", "--root", str(tmp_path), "--json"]).output)
    assert "not valid JSON" in doc["boot_error"] and doc["boot_version"] is None


def test_node_booted_by_other_means(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 0
    assert "boot method:    other" in result.output and "boot flist:     none recorded" in result.output


def test_config_gives_root_and_state_dir(tmp_path: Path) -> None:
    node = tmp_path / "node"
    make_node(node)
    write_state(node / "state", DaemonState(updated=1.0, last_check=1.0, last_result="up-to-date"))
    config = tmp_path / "zu.toml"
    config.write_text(f'[node]\nroot = "{node}"\nstate_dir = "/state"\n[source]\npublisher = "http://127.0.0.1:1/"\n'
                      'trusted_keys = ["/etc/zu/release.pub"]\n')
    result = CliRunner().invoke(cli, ["status", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["state_dir"] == str(node / "state") and doc["daemon"]["last_result"] == "up-to-date"


def test_unreadable_root_or_config_exits_1(tmp_path: Path) -> None:
    missing = CliRunner().invoke(cli, ["status", "--root", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "not a readable directory" in missing.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    broken = CliRunner().invoke(cli, ["status", "--config", str(bad)])
    assert broken.exit_code == 1 and "not valid TOML" in broken.output
    both = CliRunner().invoke(cli, ["status", "--config", str(bad), "--root", str(tmp_path)])
    assert both.exit_code == 2


def test_console_script(tmp_path: Path) -> None:
    make_node(tmp_path)
    proc = subprocess.run(zos_upgrade_cmd("status", "--root", str(tmp_path), "--json"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["boot_flist"] == "tf-zos/zos:latest.flist"
