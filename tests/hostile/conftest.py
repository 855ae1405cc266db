"""Fixtures of the hostile suite: one installed sandbox node per module, and its fingerprint.

The node is a :class:`tests.support.node.Sandbox` with release 1.0.0 installed by the real Upgrader
from a real hub subprocess under a real supervisord. Every hostile case compares the node's
fingerprint before and after: the whole node root (paths, modes, link targets, file bytes; the
boot files in ``tmp/`` and the services' ``run/`` files included) and the durable part of the state
directory (manifests, journal, backups, the list of complete mounts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile.liar import script_file
from tests.support.node import Sandbox, install_hub_flist, service_release, tree_digest
from tests.support.procs import REPO, free_port, serving
from tests.support.supervisord import RunningSupervisord, running_supervisord
from zos_upgrade.hub.client import HubClient
from zos_upgrade.net import RetryPolicy
from zos_upgrade.node.history import HISTORY_FILE
from zos_upgrade.sources import ReleaseRejected
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.upgrade import ReleaseRefused, UpgradeFailed, Upgrader, UpgradeReport

# Not durable node state: content-addressed caches (every entry verified before use) and the
# record of the last refusal, which is the one thing a refused release is expected to write.
STATE_CACHES = ("cache", "flists")
LAST_RESULT = "last-transaction.json"


@dataclass
class Node:
    box: Sandbox
    sd: RunningSupervisord

    def supervisor(self) -> SupervisordClient:
        return SupervisordClient(self.sd.socket_path, include_dir=self.sd.include_dir, start_seconds=0)

    def upgrader(self) -> Upgrader:
        return self.box.upgrader(self.supervisor())

    def hub_client(self, url: str | None = None, **options: object) -> HubClient:
        """A node's hub client (short timeouts and few retries: the hostile cases must fail fast)."""
        settings: dict[str, object] = {"timeout": 2.0, "retry": RetryPolicy(attempts=2, deadline=4.0)}
        settings.update(options)
        return HubClient(url or self.box.hub_url, cache_dir=self.box.state / "flists",
                         **settings)  # type: ignore[arg-type]

    async def upgrade_to(self, fqdn: str, hub_url: str | None = None, **options: object) -> UpgradeReport:
        """What the daemon does for a hub event: read /light, then run the transaction."""
        async with self.hub_client(hub_url, **options) as hub:
            return await install_hub_flist(self.upgrader(), hub, fqdn)


def fingerprint(box: Sandbox) -> dict[str, object]:
    """Everything an observer of the node could see change (see the module docstring)."""
    state = tree_digest(box.state, exclude=(*STATE_CACHES, "mounts"))
    # the records of what the transaction did (its result, the history) say "refused": that is no change
    state.pop(LAST_RESULT, None)
    state.pop(HISTORY_FILE, None)
    mounts = box.state / "mounts"
    complete = sorted(p.name for p in mounts.iterdir()) if mounts.is_dir() else []
    return {"root": tree_digest(box.root, exclude=()), "state": state, "mounts": complete}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    box = Sandbox(tmp_path_factory.mktemp("hostile-node"))
    with running_supervisord() as sd, box.serving_hub():
        installed = Node(box, sd)
        box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0", extra={"etc/app.conf": "v1\n"}))
        box.link("latest.fl", "zos:1.0.0.fl")
        report = asyncio.run(installed.upgrade_to("tf-zos/zos:1.0.0.fl"))
        assert report.to_version == "1.0.0"
        assert box.wait_version("alpha", "1.0.0") == "1.0.0"
        yield installed


def refusal_cause(failed: UpgradeFailed) -> BaseException | None:
    """The typed error at the root of a refusal at fetch: what the source or the Flister caught.

    A source's verdict (ReleaseRejected) chains the error that made it; that one names the lie.
    """
    assert isinstance(failed, ReleaseRefused) and failed.step == "fetch", repr(failed)
    cause = failed.__cause__
    if isinstance(cause, ReleaseRejected):
        cause = cause.__cause__
    return cause


def assert_node_unchanged(node: Node, before: dict[str, object]) -> None:
    """The node is exactly as it was, no transaction is open, the old release still runs."""
    assert fingerprint(node.box) == before
    assert not (node.box.state / "journal.json").exists()
    assert node.box.version_file("alpha") == "1.0.0"



class Liar:
    """``tests/hostile/liar.py`` running in front of ``upstream``; :meth:`lie` scripts one path."""

    def __init__(self, scripts: Path, url: str) -> None:
        self.scripts = scripts
        self.url = url

    def lie(self, path: str, **answer: object) -> None:
        script_file(self.scripts, path).write_text(json.dumps(answer))

    def clear(self) -> None:
        for script in self.scripts.iterdir():
            script.unlink()


@contextlib.contextmanager
def lying_in_front_of(upstream: str, scripts: Path) -> Iterator[Liar]:
    scripts.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "tests.hostile.liar", str(scripts), upstream, str(port)]
    with serving(cmd, port, cwd=REPO):
        yield Liar(scripts, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def liar(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Liar]:
    """A liar in front of the node's real hub (no lies until a test scripts one)."""
    with lying_in_front_of(node.box.hub_url, tmp_path_factory.mktemp("lies")) as running:
        yield running


@pytest.fixture
def lies(liar: Liar) -> Iterator[Liar]:
    """The module's liar, its scripts cleared after the test."""
    yield liar
    liar.clear()
