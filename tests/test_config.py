from __future__ import annotations

from pathlib import Path

import pytest

from zos_upgrade.config import load_config, parse_config
from zos_upgrade.errors import ConfigError

EXAMPLE = """
[node]
root = "/"
state_dir = "/var/cache/modules/upgrade"
[source]
hub = "https://hub.example"
flist = "tf-zos/zos:production:latest.flist"
bins_repo = "tf-zos-bins"
interval = 600
jitter = 60
[supervisor]
kind = "supervisord"
socket = "/var/run/supervisor.sock"
[upgrade]
self_update = true
probation = 30
"""


def test_issue_example_parses_with_defaults() -> None:
    cfg = parse_config(EXAMPLE)
    assert cfg.source.flist == "tf-zos/zos:production:latest.flist"
    assert cfg.supervisor.kind == "supervisord"
    assert cfg.upgrade.probation == 30.0
    assert cfg.upgrade.protected == ["upgrade"]
    assert cfg.metrics.enabled is False


def test_paths_resolve_under_the_node_root(tmp_path: Path) -> None:
    cfg = parse_config(EXAMPLE.replace('root = "/"', f'root = "{tmp_path}"'))
    assert cfg.state_dir == tmp_path / "var/cache/modules/upgrade"
    assert cfg.supervisor_socket == tmp_path / "var/run/supervisor.sock"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("probation = 30", "probaton = 30"), "unknown field `probaton`"),
        (("interval = 600", 'interval = "ten"'), "Expected `float`"),
        (("interval = 600", "interval = 0"), "interval"),
        (('kind = "supervisord"', 'kind = "systemd"'), "kind"),
        (('hub = "https://hub.example"', 'hub = "ftp://hub"'), "not an http"),
        (('flist = "tf-zos/zos:production:latest.flist"', 'flist = "nolink"'), "repo/name"),
        (('state_dir = "/var/cache/modules/upgrade"', 'state_dir = "var/x"'), "absolute"),
        (('state_dir = "/var/cache/modules/upgrade"', 'state_dir = "/var/../etc"'), r"'\.\.'"),
        (("[upgrade]", "[upgrade\n"), "not valid TOML"),
        (("probation = 30", "writer_processes = -1"), r"Expected `int` >= 0 - at `\$.upgrade.writer_proc"),
        (("probation = 30", 'writer_processes = "many"'), r"Invalid enum value 'many' - at `\$.upgrade.wr"),
        (("probation = 30", "writer_processes = 65"), r"Expected `int` <= 64"),
    ],
)
def test_bad_configs_name_the_problem(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(EXAMPLE.replace(*change), source="node.toml")


def test_writer_processes_automatic_by_default_or_a_number() -> None:
    assert parse_config(EXAMPLE).upgrade.workers is None
    assert parse_config(EXAMPLE + 'writer_processes = "auto"\n').upgrade.workers is None
    assert parse_config(EXAMPLE + "writer_processes = 0\n").upgrade.workers == 0
    assert parse_config(EXAMPLE + "writer_processes = 3\n").upgrade.workers == 3


def test_source_is_required() -> None:
    with pytest.raises(ConfigError, match=r"needs `hub`"):
        parse_config("[node]\n")
    with pytest.raises(ConfigError, match="not both"):
        parse_config(EXAMPLE.replace("[source]", '[source]\npublisher = "http://127.0.0.1:1"'))


def test_metrics_only_on_loopback() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert parse_config(EXAMPLE + f'[metrics]\nenabled = true\nhost = "{host}"\n').metrics.host == host
    for host in ("0.0.0.0", "10.1.2.3", "example.com"):
        with pytest.raises(ConfigError, match="loopback only"):
            parse_config(EXAMPLE + f'[metrics]\nhost = "{host}"\n')


def test_bins_repo_needs_a_hub() -> None:
    publisher = EXAMPLE.replace("hub = ", "# hub = ").replace("flist = ", "# flist = ")
    publisher = publisher.replace("[source]", '[source]\npublisher = "http://127.0.0.1:1"')
    with pytest.raises(ConfigError, match="bins_repo names a repository of a hub"):
        parse_config(publisher)
    cfg = parse_config(publisher.replace("bins_repo = ", "# bins_repo = ").replace(
        "[source]", '[source]\ntrusted_keys = ["/etc/zu/release.pub"]'))
    assert cfg.source.publisher == "http://127.0.0.1:1"
    assert [str(p) for p in cfg.trusted_key_paths] == [str(cfg.root / "etc/zu/release.pub")]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")
