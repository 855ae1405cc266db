"""[node] id / group and [rollout] (strategies, maintenance windows, fleet lock): strict, named errors."""

from __future__ import annotations

import pytest

from zos_upgrade.config import parse_config
from zos_upgrade.errors import ConfigError

BASE = """
[source]
hub = "https://hub.example"
flist = "a/b"
"""

PERIODIC = BASE + """
[rollout]
strategy = "periodic"
[[rollout.periodic.window]]
days = ["Sat", "Sun"]
start_time = "22:30"
length_minutes = 60
[[rollout.periodic.window]]
days = ["Wed"]
start_time = "03:00"
length_minutes = 1440
"""


def test_defaults_immediate_default_group_no_id() -> None:
    cfg = parse_config(BASE)
    assert cfg.rollout.strategy == "immediate"
    assert cfg.node.id is None and cfg.node.group == "default"


def test_periodic_windows_parse() -> None:
    cfg = parse_config(PERIODIC)
    windows = cfg.rollout.periodic.window
    assert [w.days for w in windows] == [["Sat", "Sun"], ["Wed"]]
    assert windows[0].start_time == "22:30" and windows[1].length_minutes == 1440


def test_fleet_lock_with_identity() -> None:
    cfg = parse_config(BASE + '[node]\nid = "node-7"\ngroup = "workers"\n'
                       '[rollout]\nstrategy = "fleet_lock"\nfleet_lock.base_url = "http://127.0.0.1:8080/"\n')
    assert cfg.rollout.fleet_lock.base_url == "http://127.0.0.1:8080/"
    assert (cfg.node.id, cfg.node.group) == ("node-7", "workers")


@pytest.mark.parametrize(("text", "message"), [
    (BASE + '[rollout]\nstrategy = "sometimes"\n', "strategy"),
    (BASE + '[rollout]\nstrategy = "periodic"\n', "needs at least one"),
    (BASE + '[rollout]\nstrategy = "fleet_lock"\n', "needs rollout.fleet_lock.base_url"),
    (BASE + '[rollout]\nstrategy = "fleet_lock"\nfleet_lock.base_url = "ftp://x"\n', "not an http"),
    (BASE + '[rollout]\nspeed = 3\n', "speed"),
    (PERIODIC.replace('"22:30"', '"24:00"'), "not a time of day"),
    (PERIODIC.replace('"22:30"', '"9:30"'), "not a time of day"),
    (PERIODIC.replace('"22:30"', '"22:30:00"'), "not a time of day"),
    (PERIODIC.replace('"22:30"', '2230'), "start_time"),
    (PERIODIC.replace('["Sat", "Sun"]', '["Saturday"]'), "days"),
    (PERIODIC.replace('["Sat", "Sun"]', '[]'), "days is empty"),
    (PERIODIC.replace('["Sat", "Sun"]', '["Sat", "Sat"]'), "twice"),
    (PERIODIC.replace("length_minutes = 60", "length_minutes = 0"), "length_minutes"),
    (PERIODIC.replace("length_minutes = 60", "length_minutes = 20000"), "length_minutes"),
    (PERIODIC.replace("length_minutes = 60", ""), "length_minutes"),
    (PERIODIC.replace("length_minutes = 60", "length_minutes = 60\ntime_zone = \"local\""), "time_zone"),
    (BASE + '[node]\nid = ""\n', "not a node id"),
    (BASE + '[node]\nid = "a b"\n', "not a node id"),
    (BASE + '[node]\nid = "' + "x" * 129 + '"\n', "not a node id"),
    (BASE + '[node]\ngroup = "a/b"\n', "not a group name"),
    (BASE + '[node]\ngroup = ""\n', "not a group name"),
])
def test_bad_rollout_configs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, source="zos.toml")
