"""`zos-upgrade install FLIST_FILE|URL` end to end (issue 18 item 3): a sandbox node, the real hub, a
real supervisord; the file goes through the daemon's trust (hub md5, a signed release object) or a
loud --allow-unsigned, then one ordinary transaction under the node's lock. Checked from outside:
services, boot files, manifest, exit codes, and an unchanged node for every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

# the daemon tests' node (hub + supervisord + config) is the fixture here too; ruff reads its use as
# a parameter as a redefinition of the import
from tests.e2e.daemon_node import LINK, Node, wait_for
from tests.support.node import REPO_NAME, service_release, tree_digest
from tests.support.procs import free_port, serving, stop_process, zos_upgrade_cmd
from zos_upgrade.cli import cli as zos_upgrade
from zos_upgrade.publisher import ReleaseTree
from zos_upgrade.publisher.signing import generate_key, public_key_pem

NODE_FILES = ("run", "tmp", "var", "sup")


def install(node: Node, *args: str) -> Result:
    return CliRunner().invoke(zos_upgrade, ["install", *args, "--config", str(node.config)])


def stick(node: Node, version: str, **kw: Any) -> Path:
    """A release packed on the hub, and a copy of its flist file on a 'USB stick' beside the node."""
    packed = node.box.pack(f"zos:{version}.fl", service_release(node.root, version, **kw))
    copy = node.box.base / "stick" / packed.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(packed, copy)
    return copy


def boot_manifest(node: Node) -> dict[str, Any]:
    return dict(json.loads((node.state / "manifests/boot.json").read_text()))


def test_first_boot_from_a_file_then_the_daemon_follows_on(node: Node) -> None:
    flist = stick(node, "1.0.0")
    proc = install(node, str(flist))
    assert proc.exit_code == 0, proc.output
    assert "installed 1.0.0 (from nothing), verified by hub md5" in proc.stdout
    assert node.box.wait_version("alpha", "1.0.0") == "1.0.0"
    assert node.box.wait_version("beta", "1.0.0") == "1.0.0"
    assert (node.root / "tmp/flist.name").read_text() == LINK  # the link the daemon follows
    assert json.loads((node.root / "tmp/flist.info").read_text())["target"] == "zos:1.0.0.fl"
    info = boot_manifest(node)["info"]
    assert info["unsigned"] is False and info["verified_by"].startswith("hub md5")

    node.release("1.0.0")  # the link on the hub names what was installed: nothing to do
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert "transaction starts" not in proc.stderr and node.status()["last_result"] == "up-to-date"


def test_on_a_running_node_refused_beside_the_daemon_then_installed_from_a_url(node: Node) -> None:
    node.release("1.0.0")
    daemon = node.start()
    try:
        wait_for(lambda: node.status()["current_version"] == "1.0.0", what="the first install")
        node.box.pack("zos:1.1.0.fl", service_release(node.root, "1.1.0", extra={"opt/app/new.txt": "n"}))
        url = f"{node.box.hub_url}/{REPO_NAME}/zos:1.1.0.fl"
        beside = install(node, url)
        assert beside.exit_code == 1, beside.output
        assert f"pid {daemon.pid}" in beside.output and "daemon.lock" in beside.output
        assert node.box.version_file("alpha") == "1.0.0"
    finally:
        stop_process(daemon)
    proc = install(node, url)
    assert proc.exit_code == 0, proc.output
    assert "installed 1.1.0 (from 1.0.0)" in proc.stdout and "1 file(s) added" in proc.stdout
    assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
    assert (node.root / "opt/app/new.txt").read_text() == "n"
    assert json.loads((node.root / "tmp/flist.info").read_text())["target"] == "zos:1.1.0.fl"


def test_bad_inputs_are_clear_errors_and_change_nothing(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.box.wait_version("beta", "1.0.0")
    before = tree_digest(node.root, exclude=NODE_FILES)
    manifest = boot_manifest(node)
    junk = node.box.base / "zos:1.1.0.fl"
    junk.write_text("not an flist at all\n")
    other = stick(node, "1.1.0")
    node.box.pack("zos:1.1.0.fl", service_release(node.root, "1.1.0", extra={"x": "other bytes"}))
    unnamed = node.box.base / "stick" / "release.fl"
    shutil.copyfile(other, unnamed)
    cases = [
        ((str(node.box.base / "missing.fl"),), 1, "does not exist or is not a file"),
        ((str(junk),), 1, "not an flist: expected gzip"),
        ((str(other),), 1, "the hub " + node.box.hub_url + " announces"),  # md5 of another upload
        ((f"{node.box.hub_url}/{REPO_NAME}/zos:9.9.9.fl",), 1, "zos:9.9.9.fl could not be read"),
        ((str(unnamed),), 1, "carries no semver version"),
        ((str(other), "--version", "1.2.0"), 1, "--version 1.2.0 but the name carries 1.1.0"),
        ((str(other), "--version", "one"), 2, "is not a semver 2.0 version"),
        (("ftp://example.org/zos:1.1.0.fl",), 2, "only http:// and https:// URLs"),
        ((str(other), "--release", str(junk)), 2, "--release is for publisher mode"),
    ]
    for args, code, message in cases:
        proc = install(node, *args)
        assert proc.exit_code == code, (args, proc.output)
        assert message in proc.output, (args, proc.output)
        assert tree_digest(node.root, exclude=NODE_FILES) == before, args
        assert boot_manifest(node) == manifest and not (node.state / "journal.json").exists()
    assert node.box.version_file("alpha") == "1.0.0"


def test_allow_unsigned_is_loud_and_recorded(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    flist = stick(node, "1.1.0")
    node.box.pack("zos:1.1.0.fl", service_release(node.root, "1.1.0", extra={"x": "the hub's own"}))
    assert install(node, str(flist)).exit_code == 1  # not the hub's file: refused...
    proc = install(node, str(flist), "--allow-unsigned")  # ...unless the operator says so, loudly
    assert proc.exit_code == 0, proc.output
    assert "WARNING: installing" in proc.stderr and "UNSIGNED" in proc.stderr
    assert "INSTALLING AN UNSIGNED RELEASE" in proc.stderr  # the log line too
    assert "verified by UNSIGNED (--allow-unsigned)" in proc.stdout
    assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
    info = boot_manifest(node)["info"]
    assert info["unsigned"] is True and info["verified_by"] == "UNSIGNED (--allow-unsigned)"
    shown = CliRunner().invoke(zos_upgrade, ["status", "--config", str(node.config)])
    assert "UNSIGNED" in shown.stdout


def test_publisher_mode_with_a_signed_release_object_file(node: Node) -> None:
    key, stranger = generate_key(), generate_key()
    (node.root / "keys").mkdir()
    (node.root / "keys/release.pub").write_bytes(public_key_pem(key.public_key()))
    tree = ReleaseTree(node.box.base / "releases")
    tree.root.mkdir()
    flist = stick(node, "1.0.0")
    url = f"{node.box.hub_url}/{REPO_NAME}/zos:1.0.0.fl"
    tree.add("1.0.0", flist_url=url, flist_file=flist, key=key)
    forged = ReleaseTree(node.box.base / "forged")
    forged.root.mkdir()
    forged.add("1.0.0", flist_url=url, flist_file=flist, key=stranger)
    port = free_port()  # a publisher nobody listens on: the object file needs no network
    node.write_config(source=f'publisher = "http://127.0.0.1:{port}"\ntrusted_keys = ["/keys/release.pub"]\n')

    refused = install(node, str(flist), "--release", str(forged.root / "1.0.0"))
    assert refused.exit_code == 1 and "not among the 1 trusted key(s)" in refused.output, refused.output
    assert not (node.state / "manifests/boot.json").exists()

    proc = install(node, str(flist), "--release", str(tree.root / "1.0.0"))
    assert proc.exit_code == 0, proc.output
    assert "installed 1.0.0 (from nothing), verified by ed25519-signed blake2b-256" in proc.stdout
    assert node.box.wait_version("alpha", "1.0.0") == "1.0.0"

    # without the object file, the configured publisher is asked which signed release it is
    second = stick(node, "1.1.0")
    tree.add("1.1.0", flist_url=f"{node.box.hub_url}/{REPO_NAME}/zos:1.1.0.fl", flist_file=second, key=key)
    with serving(zos_upgrade_cmd("release", "serve", "--root", str(tree.root), "--port", str(port)), port):
        junk = node.box.base / "zos:1.2.0.fl"
        junk.write_bytes(second.read_bytes() + b"\0")
        unknown = install(node, str(junk))
        assert unknown.exit_code == 1 and "matches none of the 2 release(s)" in unknown.output, unknown.output
        proc = install(node, str(second))
        assert proc.exit_code == 0, proc.output
        assert "installed 1.1.0 (from 1.0.0)" in proc.stdout
    assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
