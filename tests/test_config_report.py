"""[report]: the node's fleet-report token and queue bound, strictly validated."""

from __future__ import annotations

import pytest

from zos_upgrade.config import parse_config
from zos_upgrade.errors import ConfigError
from zos_upgrade.hub.rollout import node_token

# [trust] insecure: these tests are about reports, not authenticity
BASE = '[source]\nhub = "https://hub.example"\nflist = "a/b"\n[trust]\ninsecure = true\n'


def test_report_defaults_and_a_token() -> None:
    assert parse_config(BASE).report.token is None
    token = node_token("0123456789abcdef-node", "node-7")
    cfg = parse_config(BASE + f'[report]\ntoken = "{token}"\nqueue = 10\n')
    assert (cfg.report.token, cfg.report.queue) == (token, 10)


@pytest.mark.parametrize(("table", "field"), [
    ('token = "short"', "report.token"),
    ('token = "zn1.has a space in it....."', "report.token"),
    ("token = 5", "report.token"),
    ("queue = 0", "report.queue"),
    ("queue = 100000", "report.queue"),
    ('url = "http://x"', "url"),
])
def test_bad_report_tables_are_refused(table: str, field: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(BASE + f"[report]\n{table}\n")
    assert field in str(refused.value)
