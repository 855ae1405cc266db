"""`zos-upgrade hub ...` against a real hub."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.support.hub import GOLDEN_FLISTS, TOKEN_A, HubFactory, make_golden_layout
from zos_upgrade.cli import cli


def test_hub_commands(start_hub: HubFactory, tmp_path: Path) -> None:
    runner = CliRunner()
    root = make_golden_layout(tmp_path / "store")
    with start_hub(root) as hub:
        env = {"ZOS_HUB_URL": hub.url, "ZOS_HUB_TOKEN": TOKEN_A}

        def run(*args: str) -> str:
            result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result.output

        assert run("hub", "ls").strip() == "golden"
        listing = run("hub", "ls", "golden")
        assert "symlink" in listing and "app:latest.flist -> v2.flist" in listing
        info = json.loads(run("hub", "info", "golden/app:latest.flist"))
        assert info["target"] == "v2.flist" and info["size"] == 2631
        uploaded = json.loads(
            run("hub", "upload", str(GOLDEN_FLISTS / "v1.flist"), "--name", "zos:1.0.0.flist")
        )
        assert uploaded["name"] == "zos:1.0.0.flist"
        assert "latest.flist -> zos:1.0.0.flist" in run("hub", "link", "zos:1.0.0.flist", "latest.flist")
        run("hub", "tag", "stable", "zos.flist", "alpha/zos:1.0.0.flist")
        entries = json.loads(run("hub", "ls", "alpha", "--json"))
        assert {"name": "stable", "type": "tag"}.items() <= entries[0].items()  # ".tag-" sorts first
        run("hub", "tag", "stable", "zos.flist", "alpha/zos:1.0.0.flist", "--delete")
        run("hub", "delete", "latest.flist")
        assert [e["name"] for e in json.loads(run("hub", "ls", "alpha", "--json"))] == ["zos:1.0.0.flist"]

        missing = runner.invoke(cli, ["hub", "info", "golden/nope.flist"], env=env)
        assert missing.exit_code == 1 and "source not found" in missing.output
        bad = runner.invoke(cli, ["hub", "info", "golden/../x"], env=env)
        assert bad.exit_code == 1 and "InvalidName" in bad.output
        refused = runner.invoke(
            cli, ["hub", "link", "a", "b"], env={"ZOS_HUB_URL": hub.url, "ZOS_HUB_TOKEN": "x" * 20}
        )
        assert refused.exit_code == 1 and "invalid token" in refused.output


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text("nonsense = 1\n")
    result = CliRunner().invoke(cli, ["hub", "serve", "--root", str(tmp_path / "r"), "--config", str(cfg)])
    assert result.exit_code == 1 and "unknown key" in result.output
