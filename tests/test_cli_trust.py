"""`zos-upgrade trust`, `hub link --trust-dir` and `release add --trust-keys`, end to end in a temp
folder: exit codes, help that teaches, status text and JSON, and what a real Updater then trusts."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from tuf.ngclient import Updater

from tests.support.hub import TOKEN_A, HubFactory, start_hub
from tests.support.procs import free_port, serving, zos_upgrade_cmd
from zos_upgrade.cli import cli
from zos_upgrade.publisher.signing import generate_key, private_key_pem
from zos_upgrade.trust.keys import KeyStore
from zos_upgrade.trust.layout import (
    hub_metadata_url,
    hub_targets_url,
    publisher_metadata_url,
    publisher_targets_url,
)
from zos_upgrade.trust.repository import TrustRepository

__all__ = ["start_hub"]


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args: str | Path) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def updater(base: str, targets: str, work: Path, pinned: Path) -> Updater:
    (work / "meta").mkdir(parents=True)
    (work / "targets").mkdir()
    return Updater(str(work / "meta"), base, str(work / "targets"), targets, bootstrap=pinned.read_bytes())


@pytest.mark.parametrize("sub", ["init", "sign", "link", "timestamp", "rotate", "status", "push"])
def test_every_subcommand_has_help_with_an_example(sub: str) -> None:
    out = ok("trust", sub, "--help")
    assert "zos-upgrade trust" in out or "--dir" in out
    assert "--dir" in out


def test_usage_errors_exit_2_and_failures_exit_1(tmp_path: Path) -> None:
    repo = tmp_path / "tf"
    assert invoke("trust", "init", "--dir", repo, "--expires", "forever=3").exit_code == 2
    assert invoke("trust", "init", "--dir", repo, "--expires", "timestamp=-1").exit_code == 2
    assert not repo.exists()
    ok("trust", "init", "--dir", repo)
    assert invoke("trust", "sign", "--dir", repo).exit_code == 2
    assert invoke("trust", "rotate", "--dir", repo, "timestamp").exit_code == 2
    flist = tmp_path / "zos:1.0.0.flist"
    flist.write_bytes(b"x")
    assert invoke("trust", "sign", "--dir", repo, flist, "--release", "1.0.0").exit_code == 2
    before = sorted(os.listdir(repo / "metadata"))
    result = invoke("trust", "link", "--dir", repo, "zos:production.flist", "zos:9.9.9.flist")
    assert (
        result.exit_code == 1
        and "TrustRepositoryError" in result.output
        and "not a signed target" in result.output
    )
    result = invoke("trust", "sign", "--dir", repo, flist, "--name", "../zos:1.0.0.flist")
    assert result.exit_code == 1 and "InvalidTargetPath" in result.output
    assert sorted(os.listdir(repo / "metadata")) == before
    assert invoke("trust", "status", "--dir", tmp_path / "nothing").exit_code == 1
    # as the console script, too
    proc = subprocess.run(
        zos_upgrade_cmd("trust", "init", "--dir", str(repo)), capture_output=True, text=True
    )
    assert proc.returncode == 1 and "already holds TUF metadata" in proc.stderr


def test_status_text_json_and_expired_exit_1(tmp_path: Path) -> None:
    repo = tmp_path / "tf"
    ok("trust", "init", "--dir", repo, "--root-keys", "2", "--root-threshold", "2")
    flist = tmp_path / "zos:1.0.0.flist"
    flist.write_bytes(b"release")
    ok("trust", "sign", "--dir", repo, flist)
    ok("trust", "link", "--dir", repo, "zos:production.flist", "zos:1.0.0.flist")
    out = ok("trust", "status", "--dir", repo)
    assert (
        "root       v1" in out
        and "2 of 2 keys, 2 here" in out
        and "zos:production.flist -> zos:1.0.0.flist" in out
    )
    doc = json.loads(ok("trust", "status", "--dir", repo, "--json"))
    assert {r["role"]: r["state"] for r in doc["roles"]} == dict.fromkeys(
        ("root", "targets", "snapshot", "timestamp"), "ok"
    )
    ok("trust", "rotate", "--dir", repo, "root", "--threshold", "1")
    assert json.loads(ok("trust", "status", "--dir", repo, "--json"))["roles"][0]["threshold"] == 1
    out = ok("trust", "sign", "--dir", repo, "--renew", "targets")
    assert "targets v4" in out
    # a repository signed a year ago: expired roles exit 1 and say so
    old = tmp_path / "old"
    past = datetime.now(UTC) - timedelta(days=400)
    TrustRepository.init(old / "metadata", KeyStore(old / "keys"), now=lambda: past)
    result = invoke("trust", "status", "--dir", old)
    assert result.exit_code == 1 and result.output.count("EXPIRED") == 4
    assert "timestamp v2" in ok("trust", "timestamp", "--dir", old)  # renewing one role is allowed
    result = invoke("trust", "status", "--dir", old)
    assert result.exit_code == 1 and result.output.count("EXPIRED") == 3


def test_hub_link_with_trust_dir_signs_moves_and_pushes(tmp_path: Path, start_hub: HubFactory) -> None:
    repo = tmp_path / "tf"
    ok("trust", "init", "--dir", repo)
    flist = tmp_path / "zos:1.0.0.flist"
    flist.write_bytes(os.urandom(3000))
    ok("trust", "sign", "--dir", repo, flist)
    with start_hub() as hub:
        (hub.root / "alpha").mkdir()
        (hub.root / "alpha" / flist.name).write_bytes(flist.read_bytes())
        ok("trust", "push", "--dir", repo, "--url", hub.url, "--repo", "alpha", "--token", TOKEN_A)
        # refused before the hub is touched: the target of the link is not signed
        result = invoke(
            "hub",
            "link",
            "zos:2.0.0.flist",
            "zos:production.flist",
            "--url",
            hub.url,
            "--token",
            TOKEN_A,
            "--trust-dir",
            repo,
        )
        assert result.exit_code == 1 and not os.path.lexists(hub.root / "alpha" / "zos:production.flist")
        out = ok(
            "hub",
            "link",
            "zos:1.0.0.flist",
            "zos:production.flist",
            "--url",
            hub.url,
            "--token",
            TOKEN_A,
            "--trust-dir",
            repo,
        )
        assert "pushed to alpha" in out
        assert os.readlink(hub.root / "alpha" / "zos:production.flist").endswith("zos:1.0.0.flist")
        node = updater(
            hub_metadata_url(hub.url, "alpha"),
            hub_targets_url(hub.url, "alpha"),
            tmp_path / "node",
            repo / "metadata" / "1.root.json",
        )
        node.refresh()
        info = node.get_targetinfo("zos:production.flist")
        assert info is not None and Path(node.download_target(info)).read_bytes() == flist.read_bytes()
        # without --trust-dir, exactly as before
        ok("hub", "link", "zos:1.0.0.flist", "zos:testing.flist", "--url", hub.url, "--token", TOKEN_A)
        # a phased move: the plan signed on the link entry; a bad plan moves and signs nothing
        plan = tmp_path / "plan.json"
        plan.write_text('{"start": "2026-12-05T08:00:00Z", "duration": 3600}')
        bad = tmp_path / "bad.json"
        bad.write_text('{"start": "2026-12-05T08:00:00Z"}')
        common = ["--url", hub.url, "--token", TOKEN_A, "--trust-dir", repo]
        before = sorted(p.name for p in (repo / "metadata").iterdir())
        result = invoke("hub", "link", "zos:1.0.0.flist", "zos:canary.flist", *common, "--rollout", bad)
        assert result.exit_code == 1 and "RolloutError" in result.output, result.output
        assert not os.path.lexists(hub.root / "alpha" / "zos:canary.flist")
        assert sorted(p.name for p in (repo / "metadata").iterdir()) == before
        assert invoke("hub", "link", "zos:1.0.0.flist", "zos:canary.flist", "--url", hub.url,
                      "--token", TOKEN_A, "--rollout", plan).exit_code == 2
        ok("hub", "link", "zos:1.0.0.flist", "zos:canary.flist", *common, "--rollout", plan)
        node = updater(hub_metadata_url(hub.url, "alpha"), hub_targets_url(hub.url, "alpha"),
                       tmp_path / "node2", repo / "metadata" / "1.root.json")
        node.refresh()
        canary = node.get_targetinfo("zos:canary.flist")
        assert canary is not None
        assert canary.custom["zos"]["rollout"] == {"start": "2026-12-05T08:00:00Z", "duration": 3600}


def test_release_add_signs_into_the_trees_tuf_repository(tmp_path: Path) -> None:
    tree, keys = tmp_path / "tree", tmp_path / "tree-keys"
    signer = tmp_path / "signer.key"
    signer.write_bytes(private_key_pem(generate_key()))
    flist = tmp_path / "zos-1.2.0.fl"
    flist.write_bytes(os.urandom(2000))
    url = "https://cdn.example/zos-1.2.0.fl"
    ok("release", "add", "1.1.0", "--flist", url, "--flist-file", flist, "--key", signer, "--root", tree)
    # keys inside the published tree are refused
    assert invoke("trust", "init", "--dir", tree / "tuf").exit_code == 2
    ok("trust", "init", "--dir", tree / "tuf", "--keys", keys)
    result = invoke(
        "release", "add", "1.2.0", "--flist", url, "--flist-file", flist, "--key", signer, "--root", tree
    )
    assert result.exit_code == 2 and "--trust-keys" in result.output
    assert json.loads((tree / "versions").read_text()) == ["1.1.0"]

    def add_signed(version: str) -> str:
        return ok(
            "release",
            "add",
            version,
            "--flist",
            url,
            "--flist-file",
            flist,
            "--key",
            signer,
            "--root",
            tree,
            "--trust-keys",
            keys,
        )

    # a bad plan: neither the tree nor its TUF repository change; --rollout needs --trust-keys
    bad = tmp_path / "bad.json"
    bad.write_text('{"start": "2026-12-05T08:00:00Z", "duration": 60, "steps": []}')
    before = sorted((tree / "tuf" / "metadata").iterdir())
    result = invoke("release", "add", "1.2.0", "--flist", url, "--flist-file", flist, "--key", signer,
                    "--root", tree, "--trust-keys", keys, "--rollout", bad)
    assert result.exit_code == 1 and "RolloutError" in result.output, result.output
    assert json.loads((tree / "versions").read_text()) == ["1.1.0"]
    assert sorted((tree / "tuf" / "metadata").iterdir()) == before
    plan = tmp_path / "plan.json"
    plan.write_text('{"start": "2026-12-05T08:00:00Z", "duration": 60}')
    result = invoke("release", "add", "1.2.0", "--flist", url, "--flist-file", flist, "--key", signer,
                    "--root", tree, "--rollout", plan)
    assert result.exit_code == 2 and "--trust-keys" in result.output
    out = ok("release", "add", "1.2.0", "--flist", url, "--flist-file", flist, "--key", signer,
             "--root", tree, "--trust-keys", keys, "--rollout", plan)
    assert "TUF: signed targets v2" in out
    add_signed("1.3.0")
    result = invoke("release", "withdraw", "1.3.0", "--root", tree)
    assert result.exit_code == 2 and "--trust-keys" in result.output
    assert "TUF: signed targets v4" in ok(
        "release", "withdraw", "1.3.0", "--root", tree, "--trust-keys", keys
    )
    port = free_port()
    with serving(zos_upgrade_cmd("release", "serve", "--root", str(tree), "--port", str(port)), port):
        base = f"http://127.0.0.1:{port}"
        node = updater(
            publisher_metadata_url(base),
            publisher_targets_url(base),
            tmp_path / "node",
            tree / "tuf" / "metadata" / "1.root.json",
        )
        node.refresh()
        latest = node.get_targetinfo("latest")
        assert latest is not None and latest.custom["zos"] == {"kind": "link", "link": "1.2.0"}
        release = node.get_targetinfo("1.2.0")
        assert release is not None and release.custom["zos"]["flist"] == url
        assert release.custom["zos"]["rollout"] == {"start": "2026-12-05T08:00:00Z", "duration": 60}
        release.verify_length_and_hashes(flist.read_bytes())
        assert httpx.get(f"{base}/tuf/keys/x.pem").status_code == 404
        assert httpx.get(f"{base}/tuf/settings.json").status_code == 404
