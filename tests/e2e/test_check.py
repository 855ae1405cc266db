"""`zos-upgrade check` end to end (issue 18 items 1 and 5): a sandbox node, a real hub server, a
real supervisord, the daemon's TOML config; the command run as a child process.

Every check proves it changed nothing: the node tree and the whole state directory (block cache
included) hash the same before and after. What check predicts is then compared with what the
daemon's next round really does (its "transaction applied" log line).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon_node import Node, clean_env
from tests.e2e.upgrading import client, install
from tests.support.node import Exe, Sandbox, event_for, service_release, tree_digest
from tests.support.procs import REPO, zos_upgrade_cmd
from tests.support.supervisord import RunningSupervisord
from zos_upgrade.sources import HubSource
from zos_upgrade.upgrade.preview import Preview

HOOK = Exe("#!/bin/sh\nexit 0\n")


def snapshot(n: Node) -> tuple[dict[str, str], dict[str, str]]:
    return (tree_digest(n.root, exclude=("run", "tmp", "var", "sup")), tree_digest(n.state, exclude=()))


def check(n: Node, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    before = snapshot(n)
    proc = subprocess.run(zos_upgrade_cmd("--log-format", "json", "check", "--config",
                                          str(config or n.config), *args),
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO, env=clean_env())
    assert snapshot(n) == before, "check changed the node or its state directory"
    return proc


def check_json(n: Node) -> tuple[int, dict[str, Any]]:
    proc = check(n, "--json")
    return proc.returncode, json.loads(proc.stdout)


def applied(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    return next(line for line in lines if line.get("msg", line.get("message")) == "transaction applied")


def test_up_to_date_node_exits_0(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    proc = check(node)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["current version: 1.0.0", "up to date (exit 0)"]
    code, doc = check_json(node)
    assert code == 0 and doc["result"] == "up-to-date" and doc["transactions"] == []


def test_an_update_is_planned_exactly_as_the_daemon_then_applies_it(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.release("1.1.0", extra={"opt/app/new.txt": "new", "pre-copy": HOOK})
    code, doc = check_json(node)
    assert code == 100 and doc["result"] == "update-available" and doc["exit_code"] == 100
    assert doc["current_version"] == "1.0.0"
    [tx] = doc["transactions"]
    assert (tx["key"], tx["from_version"], tx["to_version"]) == ("boot", "1.0.0", "1.1.0")
    assert tx["add"] == ["opt/app/new.txt"] and tx["replace"] == ["opt/app/VERSION"] and tx["remove"] == []
    assert tx["services_restart"] == ["alpha", "beta"] and tx["services_start"] == []
    assert tx["hooks"] == ["pre-copy"] and tx["compatible"] is None and tx["refused"] is None
    # the blocks 1.0.0 lacks: VERSION's new text, new.txt and the hook (plain sizes)
    assert tx["blocks_missing"] == 3, tx
    assert tx["download_bytes"] == len("1.1.0\n") + 3 + len(HOOK.text)
    assert tx["blocks_total"] > tx["blocks_missing"]
    assert tx["preflight"] == {"supervisor": "ok", "trust": "ok", "space": "ok"} and tx["preflight_ok"]
    text = check(node)
    assert text.returncode == 100
    assert "boot 1.0.0 -> 1.1.0 (tf-zos/zos:1.1.0.fl)" in text.stdout
    assert "    + /opt/app/new.txt" in text.stdout and "    ~ /opt/app/VERSION" in text.stdout
    assert "update available (exit 100)" in text.stdout

    proc = node.once()  # the daemon's round does what check said
    assert proc.returncode == 0, proc.stderr
    done = applied(proc)
    assert (done["files_added"], done["files_replaced"], done["files_removed"]) == (1, 1, 0)
    assert sorted(done["services_restarted"]) == tx["services_restart"]
    assert done["blocks_fetched"] == tx["blocks_missing"]
    code, doc = check_json(node)
    assert code == 0 and doc["current_version"] == "1.1.0"


def test_a_held_release_is_nothing_to_do(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.release("1.1.0", crash=("beta",))
    assert node.once().returncode == 1  # rolled back at probation: remembered as failed
    code, doc = check_json(node)
    assert code == 0 and doc["result"] == "held" and doc["transactions"] == []
    [held] = doc["held"]
    assert "1.1.0" in held and "clear-failed" in held


def test_a_release_for_other_nodes_is_reported_refused(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.config.write_text(node.config.read_text().replace("[node]\n", '[node]\ncompatible = "zos-x86"\n', 1))
    node.box.pack("zos:1.1.0.fl", service_release(node.root, "1.1.0"), tags={"compatible": "zos-arm64"})
    node.box.link("zos:latest.fl", "zos:1.1.0.fl")
    code, doc = check_json(node)
    assert code == 1 and doc["result"] == "refused"
    [tx] = doc["transactions"]
    assert tx["compatible"] == "zos-arm64" and "IncompatibleRelease" in tx["refused"]
    assert "'zos-arm64'" in tx["refused"] and "'zos-x86'" in tx["refused"]
    text = check(node)
    assert text.returncode == 1 and "REFUSED:" in text.stdout and "refuse it (exit 1)" in text.stdout


def test_a_failing_preflight_is_reported_and_exits_1(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.release("1.1.0")
    node.config.write_text(node.config.read_text().replace("/sup/supervisor.sock", "/sup/none.sock"))
    code, doc = check_json(node)
    assert code == 1 and doc["result"] == "refused"
    [tx] = doc["transactions"]
    assert not tx["preflight_ok"] and "does not exist" in tx["preflight"]["supervisor"]
    assert tx["add"] == [] and tx["replace"] == ["opt/app/VERSION"]  # the plan is still shown


def test_an_unreachable_hub_and_a_bad_config_exit_1(node: Node, tmp_path: Path) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.write_config(source='hub = "http://127.0.0.1:9"\nflist = "tf-zos/zos:latest.fl"\n')
    code, doc = check_json(node)
    assert code == 1 and doc["result"] == "error" and "boot check" in doc["errors"][0]
    bad = tmp_path / "bad.toml"
    bad.write_text("[node]\ncompatible = 'a b'\n")
    proc = check(node, config=bad)
    assert proc.returncode == 1 and "node.compatible" in proc.stderr and proc.stdout == ""
    usage = check(node, "--bogus")
    assert usage.returncode == 2


def test_help_teaches_the_exit_codes() -> None:
    proc = subprocess.run(zos_upgrade_cmd("check", "--help"), capture_output=True, text=True, timeout=30,
                          check=False, cwd=REPO)
    assert proc.returncode == 0
    for words in ("Exit codes:", "100  an update is available", "Examples:", "--json"):
        assert words in proc.stdout


@pytest.mark.parametrize("suffix", [".fl", ".flist"])
def test_block_fingerprints_match_the_node_in_both_formats(box: Sandbox, sd: RunningSupervisord,
                                                           suffix: str) -> None:
    """A file the node has (two blocks, or one, or empty) is unchanged; new content or mode is not."""
    big = bytes(range(256)) * 3000  # 768000 bytes: two blocks
    tree = service_release(box.root, "1.0.0", extra={"opt/big": big, "opt/empty": "", "opt/mode": "m"})
    box.pack(f"zos:1.0.0{suffix}", tree)
    asyncio.run(install(box, sd, f"tf-zos/zos:1.0.0{suffix}"))
    tree.update({"opt/app/VERSION": "1.1.0\n", "opt/mode": Exe("m")})
    box.pack(f"zos:1.1.0{suffix}", tree)
    before = (tree_digest(box.root), tree_digest(box.state, exclude=()))

    async def preview() -> Preview:
        async with box.hub_client() as hub:
            with tempfile.TemporaryDirectory() as folder:
                upgrader = box.upgrader(client(sd))
                return await upgrader.preview_from(HubSource(hub, Path(folder)),
                                                   await event_for(hub, f"tf-zos/zos:1.1.0{suffix}"), "boot")

    seen = asyncio.run(preview())
    assert (tree_digest(box.root), tree_digest(box.state, exclude=())) == before
    assert seen.plan is not None and seen.plan.add == [] and seen.plan.remove == []
    assert seen.plan.replace == ["opt/app/VERSION", "opt/mode"]
    assert (seen.blocks_total, seen.blocks_missing, seen.download_bytes) == (7, 1, len("1.1.0\n"))
