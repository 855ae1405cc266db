"""Config fragments: ``<stem>.d/*.toml`` merged in name order, origins shown, bad fragments named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.test_config import BASE
from zos_upgrade.cli import cli
from zos_upgrade.config import load_config, load_config_files
from zos_upgrade.configd import fragment_dir
from zos_upgrade.errors import ConfigError

MAIN = BASE.replace("[source]", '[source]\ntrusted_keys = ["/k1.pub"]')  # a node of its own under tmp_path


def _node(tmp_path: Path, *fragments: tuple[str, str]) -> Path:
    main = tmp_path / "zu.toml"
    main.write_text(MAIN.format(root=tmp_path))
    folder = fragment_dir(main)
    folder.mkdir(exist_ok=True)
    for name, text in fragments:
        (folder / name).write_text(text)
    return main


def test_fragment_folder_is_named_after_the_main_file() -> None:
    assert fragment_dir(Path("/etc/zos-upgrade/config.toml")) == Path("/etc/zos-upgrade/config.d")
    assert fragment_dir(Path("/etc/zos-upgrade.toml")) == Path("/etc/zos-upgrade.d")


def test_fragments_merge_in_name_order_key_by_key_and_record_origins(tmp_path: Path) -> None:
    main = _node(tmp_path,
                 ("20-late.toml", "[upgrade]\nprobation = 10\n"),
                 ("10-early.toml",
                  '[upgrade]\nprobation = 5\nhook_timeout = 7\n[source]\ntrusted_keys = ["/k2.pub"]\n'),
                 ("30-x.toml~", "not toml at all ["),  # an editor's backup: not a fragment
                 (".hidden.toml", "not toml at all ["))
    loaded = load_config_files(main)
    folder = fragment_dir(main)
    assert loaded.files == [main, folder / "10-early.toml", folder / "20-late.toml"]
    cfg = loaded.config
    assert cfg.upgrade.probation == 10 and cfg.upgrade.hook_timeout == 7  # later wins, key by key
    assert cfg.source.hub == "http://127.0.0.1:9" and cfg.source.flist == "a/b"  # the table is not replaced
    assert cfg.source.trusted_keys == ["/k2.pub"]  # a list is one value
    assert loaded.origins["upgrade.probation"] == folder / "20-late.toml"
    assert loaded.origins["upgrade.hook_timeout"] == folder / "10-early.toml"
    assert loaded.origins["source.hub"] == main
    assert "upgrade.self_update" not in loaded.origins  # the default
    assert load_config(main) == cfg  # what the daemon and status read


def test_no_fragment_folder_is_the_main_file_alone(tmp_path: Path) -> None:
    main = tmp_path / "zu.toml"
    main.write_text(MAIN.format(root=tmp_path))
    assert load_config_files(main).files == [main]


BAD = [
    ("invalid TOML", "[upgrade\n", r"40-bad.toml: not valid TOML"),
    ("unknown key", "[upgrade]\nprobaton = 1\n",
     r"40-bad.toml: Object contains unknown field `probaton` - at `\$.upgrade`"),
    ("wrong type", '[source]\ninterval = "ten"\n',
     r"40-bad.toml: Expected `float`, got `str` - at `\$.source.interval`"),
    ("out of bounds", "[upgrade]\nprobation = inf\n", r"40-bad.toml: upgrade.probation = inf is out of"),
    ("meta bound", "[metrics]\nport = 0\n", r"40-bad.toml: Expected `int` >= 1 - at `\$.metrics.port`"),
    ("bad path", '[supervisor]\nsocket = "/../x"\n', r"40-bad.toml: supervisor.socket = '/../x' must not"),
    ("cross rule", '[source]\npublisher = "http://127.0.0.1:1"\n', r"40-bad.toml: \[source\] takes `hub`"),
    ("a table made a value", "upgrade = 3\n", r"40-bad.toml: Expected `object`, got `int` - at `\$.upgrade"),
]


@pytest.mark.parametrize(("what", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_fragment_is_named_with_its_key(tmp_path: Path, what: str, text: str, message: str) -> None:
    main = _node(tmp_path, ("10-ok.toml", "[upgrade]\nprobation = 5\n"), ("40-bad.toml", text))
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(main)
    assert str(fragment_dir(main) / "40-bad.toml") in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
def test_an_unreadable_fragment_is_named_unprivileged(tmp_path: Path) -> None:
    main = _node(tmp_path, ("40-bad.toml", "[upgrade]\n"))
    (fragment_dir(main) / "40-bad.toml").chmod(0)
    with pytest.raises(ConfigError, match=r"cannot read config fragment .*40-bad.toml: Permission denied"):
        load_config(main)


def test_an_unreadable_fragment_is_named(tmp_path: Path) -> None:
    main = _node(tmp_path)
    (fragment_dir(main) / "40-bad.toml").mkdir()  # a folder where a fragment file is expected
    (fragment_dir(main) / "50-dangling.toml").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"cannot read config fragment .*40-bad.toml: Is a directory"):
        load_config(main)
    (fragment_dir(main) / "40-bad.toml").rmdir()
    with pytest.raises(ConfigError, match=r"cannot read config fragment .*50-dangling.toml: No such file"):
        load_config(main)


def test_a_fragment_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    main = tmp_path / "zu.toml"
    main.write_text(MAIN.format(root=tmp_path))
    fragment_dir(main).write_text("")
    with pytest.raises(ConfigError, match=r"cannot read config fragment folder .*zu.d: Not a directory"):
        load_config(main)


@pytest.mark.parametrize("command", ["daemon", "status"])
def test_daemon_and_status_refuse_a_bad_fragment_alike(tmp_path: Path, command: str) -> None:
    main = _node(tmp_path, ("40-bad.toml", "[source]\ninterval = 1e-9\n"))
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["daemon", "--config", str(main), "--once"] if command == "daemon" else ["status", "--config",
                                                                                       str(main)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert f"{fragment_dir(main) / '40-bad.toml'}: source.interval = 1e-09 is out of range" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_show_config_text_names_each_keys_origin(tmp_path: Path) -> None:
    main = _node(tmp_path, ("10-fast.toml", "[source]\ninterval = 60\n"))
    result = CliRunner().invoke(cli, ["status", "--config", str(main), "--show-config"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"  {fragment_dir(main) / '10-fast.toml'}" in lines
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split()[0].count(".") == 1
            and not line.startswith(" ")}
    assert rows["source.interval"] == ["60.0", str(fragment_dir(main) / "10-fast.toml")]
    assert rows["source.hub"] == ['"http://127.0.0.1:9"', str(main)]
    assert rows["upgrade.self_update"] == ["true", "default"]


def test_show_config_json_shape(tmp_path: Path) -> None:
    main = _node(tmp_path, ("10-fast.toml", "[source]\ninterval = 60\n"))
    result = CliRunner().invoke(cli, ["status", "--config", str(main), "--show-config", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["files"] == [str(main), str(fragment_dir(main) / "10-fast.toml")]
    fast = str(fragment_dir(main) / "10-fast.toml")
    assert doc["keys"]["source.interval"] == {"value": 60.0, "origin": fast}
    assert doc["keys"]["upgrade.probation"] == {"value": 30.0, "origin": str(main)}
    assert doc["keys"]["metrics.port"] == {"value": 9108, "origin": None}


def test_show_config_needs_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--root", str(tmp_path), "--show-config"])
    assert result.exit_code == 2 and "--show-config needs --config" in result.output
