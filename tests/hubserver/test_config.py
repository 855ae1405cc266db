"""The hub server's config file: tokens, limits, official repositories, the block folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from zos_upgrade.errors import ConfigError
from zos_upgrade.hubserver import HubConfig, load_hub_config


def test_hub_config(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        'official = ["tf-zos"]\nmax_upload_bytes = 1000\nblocks = "blk"\n'
        '[tokens]\n"0123456789abcdef-tok" = "tf-zos"\n'
    )
    config = load_hub_config(cfg, tmp_path)
    assert config.tokens == {"0123456789abcdef-tok": "tf-zos"}
    assert config.official == frozenset({"tf-zos"}) and config.max_upload_bytes == 1000
    assert config.blocks == (tmp_path / "blk").resolve()
    assert load_hub_config(None, tmp_path).tokens == {}


def test_upload_check_limits_have_small_defaults_and_can_be_set(tmp_path: Path) -> None:
    defaults = load_hub_config(None, tmp_path)
    assert defaults.max_inflated_bytes == 256 * 1024 * 1024 and defaults.max_inflate_ratio == 100
    assert defaults.upload_check_seconds == 60.0
    assert (defaults.upload_checks, defaults.upload_checks_per_repo) == (4, 2)
    cfg = tmp_path / "hub.toml"
    cfg.write_text("max_inflated_bytes = 1048576\nmax_inflate_ratio = 10\nupload_check_seconds = 2\n"
                   "upload_checks = 8\nupload_checks_per_repo = 1\n")
    config = load_hub_config(cfg, tmp_path)
    assert (config.max_inflated_bytes, config.max_inflate_ratio) == (1048576, 10)
    assert config.upload_check_seconds == 2.0 and isinstance(config.upload_check_seconds, float)
    assert (config.upload_checks, config.upload_checks_per_repo) == (8, 1)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("toekns = 1\n", "unknown key"),
        ("max_upload_bytes = -1\n", "positive integer"),
        ("max_upload_bytes = true\n", "positive integer"),
        ('[tokens]\n"short" = "repo"\n', "shorter than 16"),
        ('[tokens]\n"0123456789abcdef-tok" = "../etc"\n', "path separator"),
        ('[tokens]\n"0123456789abcdef-tok" = 3\n', "repository name"),
        ("official = 'x'\n", "list of repository names"),
        ("this is not toml", "not valid TOML"),
        ("header_timeout = 0\n", "header_timeout must be a number above 0 and at most 300"),
        ("header_timeout = inf\n", "header_timeout must be a number above 0"),
        ("header_timeout = nan\n", "header_timeout must be a number above 0"),
        ("header_timeout = 1e308\n", "at most 300"),
        ("header_timeout = '5'\n", "header_timeout must be a number"),
        ("max_headers = 0\n", "max_headers must be a positive integer"),
        ("max_headers = 2.5\n", "max_headers must be a positive integer"),
        ("max_header_bytes = 1073741824\n", "max_header_bytes must be at most 1048576"),
        ("max_connections = 1000000\n", "max_connections must be at most 100000"),
        ("max_inflated_bytes = 0\n", "max_inflated_bytes must be a positive integer"),
        ("max_inflate_ratio = 1.5\n", "max_inflate_ratio must be a positive integer"),
        ("upload_checks = 0\n", "upload_checks must be a positive integer"),
        ("upload_checks_per_repo = -2\n", "upload_checks_per_repo must be a positive integer"),
        ("upload_check_seconds = inf\n", "upload_check_seconds must be a number above 0 and at most 3600"),
        ("upload_check_seconds = nan\n", "upload_check_seconds must be a number"),
        ("upload_check_seconds = 0\n", "upload_check_seconds must be a number"),
        ("upload_check_seconds = 1e308\n", "upload_check_seconds must be a number"),
        ("upload_check_seconds = '5'\n", "upload_check_seconds must be a number"),
    ],
)
def test_bad_hub_configs(tmp_path: Path, text: str, why: str) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=why):
        load_hub_config(cfg, tmp_path)


def _limits(config: HubConfig) -> tuple[float, int, int, int]:
    return config.header_timeout, config.max_headers, config.max_header_bytes, config.max_connections


def test_connection_limits_default_safe_and_are_read(tmp_path: Path) -> None:
    assert _limits(load_hub_config(None, tmp_path)) == (10.0, 100, 16384, 512)
    cfg = tmp_path / "hub.toml"
    cfg.write_text("header_timeout = 2.5\nmax_headers = 20\nmax_header_bytes = 4096\nmax_connections = 9\n")
    assert _limits(load_hub_config(cfg, tmp_path)) == (2.5, 20, 4096, 9)



def test_rollout_table(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text('[rollout]\nnode_secret = "0123456789abcdef-node"\nthreshold_percent = 5\n'
                   "min_reports = 50\nmax_nodes = 20000\n")
    config = load_hub_config(cfg, tmp_path)
    assert config.node_secret == "0123456789abcdef-node" and config.max_report_nodes == 20000
    assert (config.halt.threshold_percent, config.halt.min_reports) == (5.0, 50)
    defaults = load_hub_config(None, tmp_path)
    assert defaults.node_secret is None and defaults.halt.threshold_percent == 2.0


@pytest.mark.parametrize(("table", "why"), [
    ('node_secret = "short"', "node_secret must be a string of at least 16"),
    ("node_secret = 12", "node_secret must be a string"),
    ("threshold_percent = 100", "threshold_percent must be a number from 0 to below 100"),
    ("threshold_percent = -1", "threshold_percent"),
    ('threshold_percent = "2"', "threshold_percent"),
    ("min_reports = 0", "min_reports must be a positive integer"),
    ("max_nodes = true", "max_nodes must be a positive integer"),
    ("nodes = 3", "unknown key(s) ['nodes']"),
])
def test_bad_rollout_tables_are_refused(tmp_path: Path, table: str, why: str) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f"[rollout]\n{table}\n")
    with pytest.raises(ConfigError) as refused:
        load_hub_config(cfg, tmp_path)
    assert why in str(refused.value)
