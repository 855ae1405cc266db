"""The hub server's config file: tokens, limits, official repositories, the block folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from zos_upgrade.errors import ConfigError
from zos_upgrade.hubserver import load_hub_config


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
        ("max_inflated_bytes = 0\n", "max_inflated_bytes must be a positive integer"),
        ("max_inflate_ratio = 1.5\n", "max_inflate_ratio must be a positive integer"),
        ("upload_checks = 0\n", "upload_checks must be a positive integer"),
        ("upload_checks_per_repo = -2\n", "upload_checks_per_repo must be a positive integer"),
        ("upload_check_seconds = inf\n", "upload_check_seconds must be a number of seconds in .0, 3600."),
        ("upload_check_seconds = nan\n", "must be a number of seconds"),
        ("upload_check_seconds = 0\n", "must be a number of seconds"),
        ("upload_check_seconds = 1e308\n", "must be a number of seconds"),
        ("upload_check_seconds = '5'\n", "must be a number of seconds"),
    ],
)
def test_bad_hub_configs(tmp_path: Path, text: str, why: str) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=why):
        load_hub_config(cfg, tmp_path)
