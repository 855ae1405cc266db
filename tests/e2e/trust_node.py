"""A sandbox node that follows its hub through TUF, with a forging proxy between them (issue 15).

The release engineer's side is the real CLI (``zos-upgrade trust init|sign|link|rotate``) on a TUF
repository folder; its metadata go where our hub serves them (``<hub root>/.tuf/tf-zos/metadata/``,
the storage ``trust push`` writes). The node's config names the proxy as its hub and the pinned
root at a node path. :class:`Attacker` forges metadata with ``tuf.api.metadata``: with keys of its
own, or with the repository's stolen online keys (timestamp and snapshot).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root

from tests.e2e.daemon_node import Node, sandbox_node
from tests.support.node import REPO_NAME, Exe, service_release, tree_digest
from tests.support.procs import REPO, free_port, serving
from zos_upgrade.cli import cli
from zos_upgrade.demo.signing import forge_release
from zos_upgrade.trust.keys import KeyStore

PINNED = "/etc/zos-upgrade/trust/tf-zos.root.json"
LINK_NAME = "zos:latest.fl"
# the forged release's pre-copy hook leaves this file if it ever runs
HOOK_MARK = "srv/forged-hook-ran"
FORGED_HOOK = Exe('#!/bin/sh\ntouch "$ZOS_ROOT/srv/forged-hook-ran"\n')


def trust_cli(*args: str | Path) -> str:
    result = CliRunner().invoke(cli, ["trust", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@dataclass
class TrustedNode:
    node: Node
    repo: Path         # the TUF repository folder (metadata/, keys/)
    proxy_url: str
    rules_file: Path

    @property
    def metadata(self) -> Path:
        return self.repo / "metadata"

    @property
    def served(self) -> Path:
        return self.node.box.hub_root / ".tuf" / REPO_NAME / "metadata"

    def sync(self) -> None:
        """What ``trust push`` uploads: the repository's metadata, into the hub's storage."""
        self.served.mkdir(parents=True, exist_ok=True)
        for path in self.metadata.iterdir():
            shutil.copyfile(path, self.served / path.name)

    def publish(self, version: str, *, link: bool = True, **release: Any) -> Path:
        """Pack release ``version`` on the hub, sign it, move the signed link to it, serve the result."""
        file = self.node.box.pack(f"zos:{version}.fl", service_release(self.node.root, version, **release))
        trust_cli("sign", "--dir", self.repo, file)
        if link:
            self.relink(f"zos:{version}.fl")
        self.sync()
        return file

    def relink(self, target: str) -> None:
        trust_cli("link", "--dir", self.repo, LINK_NAME, target)
        self.node.box.link(LINK_NAME, target)  # the hub's own link, as `hub link` moves it
        self.sync()

    def latest_targets(self) -> Path:
        return max(self.metadata.glob("*.targets.json"), key=lambda p: int(p.name.split(".")[0]))

    def signed_sha256(self, name: str) -> str:
        """The sha256 the current targets metadata sign for target ``name``."""
        targets = json.loads(self.latest_targets().read_text())["signed"]["targets"]
        return str(targets[name]["hashes"]["sha256"])

    def forge(self, rules: dict[str, dict[str, Any]]) -> None:
        self.rules_file.write_text(json.dumps(rules))

    def seen(self) -> list[str]:
        log = self.rules_file.with_name(self.rules_file.name + ".log")
        return log.read_text().splitlines() if log.exists() else []

    def digest(self) -> dict[str, str]:
        return tree_digest(self.node.root)

    def trust_status(self) -> dict[str, Any]:
        return dict(json.loads((self.node.state / "trust" / f"{REPO_NAME}.status.json").read_text()))

    def forged_release(self, version: str = "9.9.9") -> Path:
        """A release nobody signed, with a pre-copy hook (packed outside the followed repository)."""
        (self.node.box.hub_root / "evil").mkdir(exist_ok=True)
        extra = {"pre-copy": FORGED_HOOK, "etc/ssh/authorized_keys": "ssh-ed25519 AAAA attacker\n"}
        return self.node.box.pack(f"zos:{version}.fl", service_release(self.node.root, version, extra=extra),
                                  repo="evil")


@contextmanager
def trusted_node() -> Iterator[TrustedNode]:
    with sandbox_node() as node:
        box = node.box
        repo = box.base / "tuf-repo"
        trust_cli("init", "--dir", repo)
        pinned = node.root / PINNED.lstrip("/")
        pinned.parent.mkdir(parents=True)
        shutil.copyfile(repo / "metadata" / "1.root.json", pinned)
        rules = box.base / "rules.json"
        rules.write_text("{}")
        port = free_port()
        cmd = [sys.executable, "-m", "tests.support.forging_proxy", box.hub_url, str(port), str(rules)]
        with serving(cmd, port, cwd=REPO):
            proxy = f"http://127.0.0.1:{port}"
            node.write_config(source=f'hub = "{proxy}"\nflist = "{REPO_NAME}/{LINK_NAME}"\n',
                              trust=f'root = "{PINNED}"')
            trusted = TrustedNode(node, repo, proxy, rules)
            trusted.sync()
            yield trusted


class Attacker:
    """Forged metadata (``demo/signing.forge_release``): the attacker's own keys, or stolen online keys."""

    def __init__(self, tn: TrustedNode, out: Path) -> None:
        self.tn = tn
        self.out = out
        self.keys = KeyStore(tn.repo / "keys")

    def stolen(self, role: str) -> Signer:
        root = Metadata[Root].from_file(str(self.tn.metadata / "root.json")).signed
        signers = self.keys.signers([root.get_key(k) for k in root.roles[role].keyids])
        assert signers, f"no {role} key in the repository's keys folder"
        return signers[0]

    def release(self, forged: Path, version: str = "9.9.9", **keys: Signer) -> dict[str, Any]:
        """Forged targets naming ``forged`` (the link moved to it), snapshot and timestamp; signed
        with the given keys (``targets_key``, ``snapshot_key``, ``timestamp_key``; default: the
        attacker's own). Proxy rules that serve them, and the forged flist at its hashed name."""
        name = f"zos:{version}.fl"
        files = forge_release(self.tn.metadata, self.out, name, forged, LINK_NAME, **keys)
        rules: dict[str, Any] = {f"/tuf/tf-zos/metadata/{n}": {"file": str(p)} for n, p in files.items()}
        sha = hashlib.sha256(forged.read_bytes()).hexdigest()
        rules[f"/tuf/tf-zos/targets/{sha}.{name}"] = {"file": str(forged)}
        return rules
