"""Issue 15 end to end: a node under a real supervisord follows our hub through TUF, with a forging
proxy between them. Install and upgrade through signed metadata; every attack refused with the typed
error naming it, the node's files unchanged and the forged pre-copy hook never run. `make test` runs
the happy paths, the issue's proxy attack with forged metadata and bytes, and a freeze; the other
attacks end to end are `@pytest.mark.fault` (each is also refused, faster, in tests/trust/)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.e2e.daemon_node import Node
from tests.e2e.trust_node import HOOK_MARK, LINK_NAME, PINNED, Attacker, TrustedNode, trust_cli, trusted_node
from tests.support.node import BINS_REPO, REPO_NAME, service_release
from tests.support.procs import REPO, free_port, serving, zos_upgrade_cmd
from zos_upgrade.cli import cli
from zos_upgrade.trust.keys import KeyStore
from zos_upgrade.trust.repository import TrustRepository
from zos_upgrade.upgrade.manifest import ManifestStore


@pytest.fixture
def tn() -> Iterator[TrustedNode]:
    with trusted_node() as node:
        yield node


def run_cli(*args: str | Path) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def once(tn: TrustedNode) -> subprocess.CompletedProcess[str]:
    proc = tn.node.once()
    assert proc.returncode == 0, proc.stderr
    return proc


def refused(tn: TrustedNode, error: str, attack: str) -> str:
    """One daemon round that must refuse: nothing installed, the hook never ran; its log."""
    before = tn.digest()
    proc = tn.node.once()
    log = proc.stdout + proc.stderr
    assert error in log and attack in log, log[-3000:]
    assert tn.digest() == before, "the node's files changed"
    assert not (tn.node.root / HOOK_MARK).exists(), "the forged pre-copy hook ran"
    return log


def test_install_and_upgrade_through_tuf(tn: TrustedNode) -> None:
    tn.publish("1.0.0")
    once(tn)
    assert tn.node.box.wait_version("alpha", "1.0.0") == "1.0.0"
    assert json.loads((tn.node.root / "tmp/flist.info").read_text())["target"] == "zos:1.0.0.fl"
    tn.publish("1.1.0", extra={"opt/app/new.txt": "new"})
    # `check` plans through TUF too, and writes nothing in the state dir (its own copy of the cache)
    trust_dir = tn.node.state / "trust"
    cache = {p: p.read_bytes() for p in trust_dir.rglob("*") if p.is_file()}
    check = subprocess.run(zos_upgrade_cmd("check", "--config", str(tn.node.config), "--json"),
                           capture_output=True, text=True, timeout=90, cwd=REPO, check=False)
    assert check.returncode == 100, check.stdout + check.stderr
    assert "1.1.0" in check.stdout
    assert {p: p.read_bytes() for p in trust_dir.rglob("*") if p.is_file()} == cache
    once(tn)
    assert tn.node.box.wait_version("alpha", "1.1.0") == "1.1.0"
    assert (tn.node.root / "opt/app/new.txt").read_text() == "new"
    assert tn.node.status()["current_version"] == "1.1.0"
    manifest = ManifestStore(tn.node.state).load("boot")
    assert manifest is not None
    assert str(manifest.info.get("verified_by")).startswith("TUF (root v1, targets v")
    seen = tn.seen()
    assert not [p for p in seen if p.startswith("/api/flist")], "the node asked the hub's unsigned API"
    assert any(p.startswith("/tuf/tf-zos/targets/") and p.endswith(".zos:1.1.0.fl") for p in seen)
    status = tn.trust_status()
    assert status["error"] is None and status["roles"]["targets"]["version"] >= 3
    shown = subprocess.run(zos_upgrade_cmd("status", "--config", str(tn.node.config), "--json"),
                           capture_output=True, text=True, check=True, cwd=REPO)
    trust = json.loads(shown.stdout)["trust"]
    assert trust["mode"] == "tuf" and trust["repos"][0]["roles"]["timestamp"]["version"] >= 3


def test_the_issues_proxy_attack_and_forged_metadata_are_refused(tn: TrustedNode, tmp_path: Path) -> None:
    tn.publish("1.0.0")
    once(tn)
    forged = tn.forged_release()
    attacker = Attacker(tn, tmp_path / "attacker")
    # the original attack: the hub's API announces 9.9.9 and serves the forged flist with its own md5
    light = {"name": LINK_NAME, "size": forged.stat().st_size, "updated": 1, "type": "symlink",
             "md5": "0" * 32, "target": "zos:9.9.9.fl"}
    rules = {f"/api/flist/tf-zos/{LINK_NAME}/light": {"json": light},
             "/tuf/tf-zos/metadata/timestamp.json": {"status": 404}}
    # ... plus metadata signed by the attacker's own keys (a forged link and a forged release)
    rules.update(attacker.release(forged))
    tn.forge(rules)
    refused(tn, "ForgedMetadata", "forged metadata")
    # forged flist bytes under the signed release's own URL: the signed hashes do not match
    tn.forge({})
    signed = tn.publish("1.1.0", link=False)
    tn.relink("zos:1.1.0.fl")
    sha = tn.signed_sha256("zos:1.1.0.fl")
    tn.forge({f"/tuf/tf-zos/targets/{sha}.zos:1.1.0.fl": {"file": str(forged)}})
    refused(tn, "TargetMismatch", "target mismatch")
    assert signed.exists()
    tn.forge({})
    once(tn)
    assert tn.node.box.wait_version("alpha", "1.1.0") == "1.1.0"


@pytest.mark.fault  # heavier: `make test-fault`; the same attack is refused in tests/trust/test_client.py
def test_compromised_online_keys_cannot_install(tn: TrustedNode, tmp_path: Path) -> None:
    tn.publish("1.0.0")
    once(tn)
    attacker = Attacker(tn, tmp_path / "attacker")
    tn.forge(attacker.release(tn.forged_release(), snapshot_key=attacker.stolen("snapshot"),
                              timestamp_key=attacker.stolen("timestamp")))
    log = refused(tn, "ForgedMetadata", "forged metadata")
    assert "targets" in log
    assert tn.trust_status()["error"]["type"] == "ForgedMetadata"


@pytest.mark.fault  # heavier: `make test-fault`; the same attack is refused in tests/trust/test_client.py
def test_rollback_and_mix_and_match(tn: TrustedNode, tmp_path: Path) -> None:
    tn.publish("1.0.0")
    old_timestamp = tmp_path / "old-timestamp.json"
    old_timestamp.write_bytes((tn.metadata / "timestamp.json").read_bytes())
    old_targets = tn.latest_targets()
    once(tn)
    tn.publish("1.1.0")
    once(tn)
    assert tn.node.box.wait_version("alpha", "1.1.0") == "1.1.0"
    # replayed old metadata: the signed link of the day the node ran 1.0.0
    tn.forge({"/tuf/tf-zos/metadata/timestamp.json": {"file": str(old_timestamp)}})
    refused(tn, "RollbackAttack", "rollback")
    # targets of another snapshot under the name the current snapshot expects
    tn.publish("1.2.0")
    current = tn.latest_targets()
    tn.forge({f"/tuf/tf-zos/metadata/{current.name}": {"file": str(old_targets)}})
    refused(tn, "MixAndMatch", "mix-and-match")
    # a link the release engineers moved backwards: signed, but never a downgrade
    tn.forge({})
    tn.relink("zos:1.0.0.fl")
    before = tn.digest()
    once(tn)
    assert tn.digest() == before and tn.node.box.version_file("alpha") == "1.1.0"


def test_freeze_expired_timestamp(tn: TrustedNode) -> None:
    tn.publish("1.0.0")
    once(tn)
    # the signer's clock is two days back: the timestamp it signs expired a day ago (no sleeping)
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    repo = TrustRepository(tn.metadata, KeyStore(tn.repo / "keys"), now=lambda: past)
    repo.timestamp_only()
    tn.sync()
    refused(tn, "FreezeAttack", "freeze")
    error = tn.trust_status()["error"]
    assert error["role"] == "timestamp" and error["expires"] == (past + timedelta(days=1)).isoformat()
    shown = subprocess.run(zos_upgrade_cmd("status", "--config", str(tn.node.config)),
                           capture_output=True, text=True, check=True, cwd=REPO)
    assert "metadata expired since" in shown.stdout and str((past + timedelta(days=1)).date()) in shown.stdout


@pytest.mark.fault  # heavier: `make test-fault`; the same attack is refused in tests/trust/test_client.py
def test_endless_target_is_cut_at_its_signed_length(tn: TrustedNode) -> None:
    tn.publish("1.0.0")
    once(tn)
    tn.publish("1.1.0")
    sha = tn.signed_sha256("zos:1.1.0.fl")
    tn.forge({f"/tuf/tf-zos/targets/{sha}.zos:1.1.0.fl": {"endless": True}})
    refused(tn, "EndlessData", "endless data")


@pytest.mark.fault  # heavier: `make test-fault`; the same attack is refused in tests/trust/test_client.py
def test_two_root_rotations_while_offline(tn: TrustedNode) -> None:
    tn.publish("1.0.0")
    once(tn)
    for _ in range(2):
        root = json.loads((tn.metadata / "root.json").read_text())["signed"]
        old = root["roles"]["root"]["keyids"][0]
        trust_cli("rotate", "--dir", tn.repo, "root", "--add", "1", "--revoke", old)
    tn.publish("1.1.0")
    once(tn)
    assert tn.node.box.wait_version("alpha", "1.1.0") == "1.1.0"
    assert tn.trust_status()["roles"]["root"]["version"] == 3


def test_publisher_mode_believes_only_the_trees_tuf_metadata(node: Node) -> None:
    """A release tree with a TUF repository in tree/tuf: the node installs `latest` as signed there,
    upgrades to the next signed release, and ignores the unsigned `latest` file of the tree."""
    box = node.box
    tree, keys = box.base / "releases", box.base / "tree-keys"
    tree.mkdir()
    run_cli("release", "keygen", "--out", box.base / "release")
    trust_cli("init", "--dir", tree / "tuf", "--keys", keys)
    pinned = node.root / PINNED.lstrip("/")
    pinned.parent.mkdir(parents=True)
    shutil.copyfile(tree / "tuf/metadata/1.root.json", pinned)

    def publish(version: str) -> None:
        flist = box.pack(f"zos:{version}.fl", service_release(node.root, version))
        run_cli("release", "add", version, "--flist", f"{box.hub_url}/{REPO_NAME}/zos:{version}.fl",
                "--flist-file", flist, "--key", box.base / "release.key", "--root", tree,
                "--trust-keys", keys)

    publish("1.0.0")
    port = free_port()
    serve = zos_upgrade_cmd("release", "serve", "--root", str(tree), "--port", str(port))
    with serving(serve, port, cwd=REPO):
        node.write_config(source=f'publisher = "http://127.0.0.1:{port}"\n', trust=f'root = "{PINNED}"')
        proc = node.once()
        assert proc.returncode == 0, proc.stderr
        assert node.box.wait_version("alpha", "1.0.0") == "1.0.0"
        publish("1.1.0")
        # the tree's unsigned `latest` claims a release nobody signed: not believed
        (tree / "latest").write_text("9.9.9")
        proc = node.once()
        assert proc.returncode == 0, proc.stderr
        assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
        status = json.loads((node.state / "trust" / "releases.status.json").read_text())
        assert status["error"] is None and status["roles"]["targets"]["version"] == 3


@pytest.mark.fault
def test_slow_retrieval_is_cut_by_the_fetchers_pace(tn: TrustedNode) -> None:
    """The daemon's own fetcher (1 KiB/s on average after 5 s): a trickled timestamp is cut."""
    tn.publish("1.0.0")
    once(tn)
    tn.publish("1.1.0")
    tn.forge({"/tuf/tf-zos/metadata/timestamp.json": {"trickle": 0.05}})
    started = time.monotonic()
    refused(tn, "SlowRetrieval", "slow retrieval")
    assert time.monotonic() - started < 60


@pytest.mark.fault
def test_a_revoked_targets_key_cannot_sign(tn: TrustedNode, tmp_path: Path) -> None:
    tn.publish("1.0.0")
    once(tn)
    attacker = Attacker(tn, tmp_path / "attacker")
    leaked = attacker.stolen("targets")
    root = json.loads((tn.metadata / "root.json").read_text())["signed"]
    old = root["roles"]["targets"]["keyids"][0]
    trust_cli("rotate", "--dir", tn.repo, "targets", "--add", "1", "--revoke", old)
    tn.publish("1.1.0")
    once(tn)
    assert tn.node.box.wait_version("alpha", "1.1.0") == "1.1.0"
    tn.forge(attacker.release(tn.forged_release(), targets_key=leaked,
                              snapshot_key=attacker.stolen("snapshot"),
                              timestamp_key=attacker.stolen("timestamp")))
    refused(tn, "ForgedMetadata", "forged metadata")


@pytest.mark.fault
def test_bins_repo_through_its_own_tuf_repository(tn: TrustedNode) -> None:
    """A bins repository is a TUF repository of its own (own root, own keys): its signed packages
    are installed, one it stops signing is uninstalled, an unsigned file on the hub is ignored."""
    box = tn.node.box
    bins = box.base / "tuf-bins"
    trust_cli("init", "--dir", bins)
    pinned = tn.node.root / "etc/zos-upgrade/trust/tf-zos-bins.root.json"
    shutil.copyfile(bins / "metadata/1.root.json", pinned)
    served = box.hub_root / ".tuf" / BINS_REPO / "metadata"

    def sync() -> None:
        served.mkdir(parents=True, exist_ok=True)
        for path in sorted((bins / "metadata").iterdir(), key=lambda p: p.name == "timestamp.json"):
            shutil.copyfile(path, served / path.name)

    tool = box.pack("tool:1.0.fl", {"usr/bin/tool": "#!/bin/sh\necho tool\n"}, repo=BINS_REPO)
    other = box.pack("other:2.0.fl", {"usr/bin/other": "other"}, repo=BINS_REPO)
    box.pack("unsigned:6.6.fl", {"usr/bin/unsigned": "evil"}, repo=BINS_REPO)
    trust_cli("sign", "--dir", bins, tool, other)
    sync()
    tn.publish("1.0.0")
    tn.node.write_config(
        source=f'hub = "{tn.proxy_url}"\nflist = "{REPO_NAME}/{LINK_NAME}"\nbins_repo = "{BINS_REPO}"\n',
        trust=f'root = "{PINNED}"\nbins_root = "/etc/zos-upgrade/trust/tf-zos-bins.root.json"')
    once(tn)
    assert (tn.node.root / "usr/bin/tool").read_text().endswith("echo tool\n")
    assert (tn.node.root / "usr/bin/other").read_text() == "other"
    assert not (tn.node.root / "usr/bin/unsigned").exists()
    trust_cli("sign", "--dir", bins, "--remove", "other:2.0.fl")
    sync()
    once(tn)
    assert not (tn.node.root / "usr/bin/other").exists() and (tn.node.root / "usr/bin/tool").exists()
    assert set(json.loads((tn.node.root / "tmp/bins.info").read_text())) == {f"{BINS_REPO}/tool:1.0.fl"}
