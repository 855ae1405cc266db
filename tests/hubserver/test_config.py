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
    ],
)
def test_bad_hub_configs(tmp_path: Path, text: str, why: str) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=why):
        load_hub_config(cfg, tmp_path)
