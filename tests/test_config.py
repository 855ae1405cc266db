from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from zos_upgrade.cli import cli
from zos_upgrade.config import DURATION_BOUNDS, load_config, parse_config
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
[trust]
insecure = true
[supervisor]
kind = "supervisord"
socket = "/var/run/supervisor.sock"
[upgrade]
self_update = true
probation = 30
"""

# a node of its own under a test's tmp_path (for the CLI cases)
BASE = """
[node]
root = "{root}"
state_dir = "/state"
[source]
hub = "http://127.0.0.1:9"
flist = "a/b"
interval = 600
jitter = 60
[upgrade]
probation = 30
hook_timeout = 300
stop_timeout = 30
[trust]
insecure = true
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


# ---------------------------------------------------------------- every path stays under the node root

ESCAPES = ["/../x", "/etc/../../x", "relative/x", "/a/\x00b"]


@pytest.mark.parametrize("value", ESCAPES, ids=["dotdot", "deep-dotdot", "relative", "nul"])
@pytest.mark.parametrize(
    ("section", "key"),
    [("node", "state_dir"), ("supervisor", "socket"), ("supervisor", "include_dir"), ("upgrade", "program"),
     ("source", "trusted_keys")],
)
def test_every_configured_path_that_leaves_the_root_names_its_key(section: str, key: str, value: str) -> None:
    toml_value = json.dumps([value] if key == "trusted_keys" else value)  # a JSON string is a TOML string
    text = _with(f"{section}.{key}", toml_value)
    shown = "source.trusted_keys[0]" if key == "trusted_keys" else f"{section}.{key}"
    with pytest.raises(ConfigError, match=re.escape(f"node.toml: {shown} = ")) as caught:
        parse_config(text, source="node.toml")
    assert "absolute" in str(caught.value) or "'..' or NUL" in str(caught.value)


# ---------------------------------------------------------------- durations: legal floats, not sane

INSANE = {
    "source.interval": ["inf", "nan", "1e-9", "0", "-1", "1e308"],
    "source.jitter": ["inf", "nan", "-1", "1e308"],
    "upgrade.probation": ["inf", "nan", "-0.5", "1e308"],
    "upgrade.hook_timeout": ["inf", "nan", "1e-9", "0", "1e308"],
    "upgrade.stop_timeout": ["inf", "-inf", "nan", "1e-9", "1e308"],
}
BAD_DURATIONS = [(key, value) for key, values in INSANE.items() for value in values]


def _with(key: str, value: str, text: str = EXAMPLE) -> str:
    section, name = key.split(".")
    lines = [line for line in text.splitlines() if not line.startswith(f"{name} =")]
    return "\n".join(lines).replace(f"[{section}]", f"[{section}]\n{name} = {value}") + "\n"


@pytest.mark.parametrize(("key", "value"), BAD_DURATIONS)
def test_insane_durations_are_refused_with_their_bounds(key: str, value: str) -> None:
    expected = rf"node.toml: {re.escape(key)} = .* is out of range: expected"
    with pytest.raises(ConfigError, match=expected) as caught:
        parse_config(_with(key, value), source="node.toml")
    low, high = DURATION_BOUNDS[key]
    assert f"{low:g} to {high:g} seconds" in str(caught.value)


@pytest.mark.parametrize("key", sorted(DURATION_BOUNDS))
def test_the_bounds_themselves_are_accepted(key: str) -> None:
    for bound in DURATION_BOUNDS[key]:
        parse_config(_with(key, repr(float(bound))))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('state_dir = "/"', r"node.state_dir = '/' is a system folder"),
        ('state_dir = "//"', r"node.state_dir = '//' is a system folder"),
        ('state_dir = "/etc/"', r"node.state_dir = '/etc/' is a system folder"),
        ('state_dir = "/var/run"',
         r"supervisor.socket = '/var/run/supervisor.sock' lies inside node.state_dir"),
    ],
)
def test_state_dir_must_be_the_upgraders_own(change: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(EXAMPLE.replace('state_dir = "/var/cache/modules/upgrade"', change), source="node.toml")


def test_supervisor_include_dir_is_not_the_root() -> None:
    with pytest.raises(ConfigError, match=r"supervisor.include_dir = '/'"):
        parse_config(EXAMPLE.replace("[supervisor]", '[supervisor]\ninclude_dir = "/"'))


def test_reserved_paths_name_what_no_release_may_write() -> None:
    cfg = parse_config(EXAMPLE.replace("[source]", '[source]\ntrusted_keys = ["/etc/zu/release.pub"]'))
    assert cfg.reserved_paths() == {
        "/var/cache/modules/upgrade": "the upgrader's state directory",
        "/var/run/supervisor.sock": "the supervisor's socket",
        "/etc/supervisor/conf.d": "the folder of supervisord's rendered program configs",
        "/etc/zu/release.pub": "a trusted release key",
    }


# ---------------------------------------------------------------- `daemon` and `status` refuse the same

CLI_CASES = [
    *[(key, _with(key, value, BASE)) for key, value in [
        ("source.interval", "1e-9"), ("source.jitter", "inf"), ("upgrade.probation", "inf"),
        ("upgrade.hook_timeout", "1e308"), ("upgrade.stop_timeout", "nan"),
    ]],
    ("node.state_dir", BASE.replace('state_dir = "/state"', 'state_dir = "/"')),
    ("supervisor.include_dir", BASE + '[supervisor]\ninclude_dir = "/../x"\n'),
    ("source.trusted_keys[0]", BASE.replace("[source]", '[source]\ntrusted_keys = ["/etc/../../k.pub"]')),
    ("trusted_keys", BASE.replace('hub = "http://127.0.0.1:9"\nflist = "a/b"', 'publisher = "http://127.0.0.1:9"')),
]


@pytest.mark.parametrize("command", ["daemon", "status"])
@pytest.mark.parametrize(("key", "body"), CLI_CASES, ids=[key for key, _ in CLI_CASES])
def test_daemon_and_status_refuse_the_same_configs(tmp_path: Path, command: str, key: str, body: str) -> None:
    config = tmp_path / "zu.toml"
    config.write_text(body.format(root=tmp_path))
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["daemon", "--config", str(config), "--once"] if command == "daemon" else ["status", "--config",
                                                                                       str(config)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert key in result.output and str(config) in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # refused before anything was made


def test_the_base_of_the_cli_cases_is_accepted_by_both(tmp_path: Path) -> None:
    config = tmp_path / "zu.toml"
    config.write_text(BASE.format(root=tmp_path))
    assert CliRunner().invoke(cli, ["status", "--config", str(config)]).exit_code == 0
    load_config(config)


def test_node_compatible_is_optional_and_kept() -> None:
    assert parse_config(EXAMPLE).node.compatible is None
    text = EXAMPLE.replace('root = "/"\n', 'root = "/"\ncompatible = "zos-x86_64:v3"\n', 1)
    assert parse_config(text).node.compatible == "zos-x86_64:v3"


@pytest.mark.parametrize("value", ['""', '"zos x86"', '"a,b"', '"-zos"', '"' + "z" * 65 + '"', "3"])
def test_a_bad_node_compatible_names_the_key(value: str) -> None:
    text = EXAMPLE.replace('root = "/"\n', f'root = "/"\ncompatible = {value}\n', 1)
    with pytest.raises(ConfigError, match=r"node\.compatible"):
        parse_config(text, source="node.toml")


def test_space_margin_defaults_to_the_preflight_margin_and_reaches_the_upgrader(tmp_path: Path) -> None:
    from zos_upgrade.daemon.wiring import make_upgrader
    from zos_upgrade.supervisor.supervisord import SupervisordClient
    from zos_upgrade.upgrade.preflight import DEFAULT_MARGIN

    def with_margin(value: str) -> str:
        return BASE.format(root=tmp_path).replace("[upgrade]\n", f"[upgrade]\nspace_margin = {value}\n")

    assert parse_config(BASE.format(root=tmp_path)).upgrade.space_margin == DEFAULT_MARGIN
    small = parse_config(with_margin("4096"))
    assert small.upgrade.space_margin == 4096
    upgrader = make_upgrader(small, SupervisordClient(tmp_path / "sock", include_dir=tmp_path))
    assert upgrader._ctx.settings.space_margin == 4096
    for bad in ("-1", "1.5", '"64M"', str(1 << 41)):
        with pytest.raises(ConfigError, match="space_margin"):
            parse_config(with_margin(bad))


def test_probe_timeout_reaches_the_self_steps_probe_with_the_config_file(tmp_path: Path) -> None:
    from zos_upgrade.daemon.wiring import make_upgrader
    from zos_upgrade.supervisor.supervisord import SupervisordClient

    def with_timeout(value: str) -> str:
        return BASE.format(root=tmp_path).replace("[upgrade]\n", f"[upgrade]\nprobe_timeout = {value}\n")

    assert parse_config(BASE.format(root=tmp_path)).upgrade.probe_timeout == 30
    config = parse_config(with_timeout("7.5"))
    sup = SupervisordClient(tmp_path / "sock", include_dir=tmp_path)
    probe = make_upgrader(config, sup, config_file=tmp_path / "node.toml")._ctx.settings.probe
    assert probe is not None and probe.timeout == 7.5
    assert tuple(probe.args) == ("self-test", "--config", str(tmp_path / "node.toml"))
    off = parse_config(with_timeout("7.5").replace("[upgrade]\n", "[upgrade]\nself_update = false\n"))
    assert make_upgrader(off, sup)._ctx.settings.probe is None  # nothing to probe without self-update
    for bad in ("0", "-1", "3601", '"30s"', "nan"):
        with pytest.raises(ConfigError, match="probe_timeout"):
            parse_config(with_timeout(bad))
