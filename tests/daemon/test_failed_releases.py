"""Failed releases are remembered and never applied twice (issue 16 item 11).

Real events (FListEvent with the hub's /light info, ReleaseEvent with a signed hash), real policies,
the real loop and the real memory file; the upgrader is a stand-in that fails a chosen release the
way the real one does (RolledBack at probation). tests/e2e/test_daemon.py runs the same on the
real hub and supervisord.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.support.procs import free_port
from zos_upgrade.cli import cli
from zos_upgrade.config import NodeConfig
from zos_upgrade.daemon import BootPolicy, Daemon, NodeParts, ReleasePolicy
from zos_upgrade.daemon.memory import ReleaseMemory
from zos_upgrade.hub.models import FlistInfo
from zos_upgrade.metrics import PrometheusMetrics, start_metrics
from zos_upgrade.node.events import FListEvent, ReleaseEvent
from zos_upgrade.node.failed import FAILED_FILE, FailedReleases, FailedReleasesError
from zos_upgrade.publisher.base import Upgrade
from zos_upgrade.upgrade import ReleaseRefused, RolledBack
from zos_upgrade.versions import ZERO, Version


def event(version: str, md5: str) -> FListEvent:
    return FListEvent("tf", FlistInfo(name="zos:latest.fl", size=1, updated=1, type="symlink", md5=md5,
                                      target=f"zos:{version}.fl"))


@dataclass
class Node:
    """Boot files and upgrader in one; ``fail`` maps a release id (md5 or hash) to what it raises."""

    version: Version = ZERO
    fail: dict[str, Exception] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)

    def detect_boot_method(self) -> str:
        return "flist" if self.version != ZERO else "other"

    def current(self) -> FListEvent:
        return event(str(self.version), "installed")

    def current_bins(self) -> dict[str, Any]:
        return {}

    async def recover(self) -> str | None:
        return None

    def sync_boot_files(self) -> None:
        pass

    async def install_from(self, source: Any, candidate: Any, target: str) -> Any:
        key = candidate.info.md5 if isinstance(candidate, FListEvent) else candidate.upgrade.hash
        self.tried.append(key)
        if key in self.fail:
            raise self.fail[key]
        self.version = candidate.version() if isinstance(candidate, FListEvent) else candidate.version
        return type("Report", (), {"bytes_downloaded": 1, "blocks_from_cache": 0})()


@dataclass
class Link:
    """What the hub's link points at now; the watcher proposes it while it is above the node."""

    offer: FListEvent | None = None
    confirmed: list[Version] = field(default_factory=list)

    def watcher(self, current: Version) -> Link:
        self.current = current
        return self

    async def check(self) -> FListEvent | None:
        if self.offer is None or self.offer.version() <= self.current:
            return None
        return self.offer

    def confirm(self, version: Version) -> None:
        self.confirmed.append(version)
        self.current = version


def probation_failure() -> RolledBack:
    return RolledBack("service beta: BACKOFF Exited too quickly", step="probation")


def _daemon(node: Node, link: Link, state: Path) -> Daemon:
    memory = ReleaseMemory(FailedReleases(state))
    parts = NodeParts(upgrader=node, boot=node, memory=memory,
                      policies=[BootPolicy(node, object(), link.watcher, memory=memory)])
    return Daemon(parts, state_dir=state)


def _once(node: Node, link: Link, state: Path) -> dict[str, Any]:
    asyncio.run(_daemon(node, link, state).run(once=True))
    return dict(json.loads((state / "status.json").read_text()))


def test_a_release_failing_probation_is_tried_once_not_next_round_nor_after_a_restart(tmp_path: Path) -> None:
    node = Node(Version.parse("1.0.0"), fail={"bad": probation_failure()})
    link = Link(event("1.1.0", "bad"))
    daemon = _daemon(node, link, tmp_path)

    async def two_rounds() -> list[str]:
        await daemon.start_up()
        return [(await daemon.round()).result, (await daemon.round()).result]

    assert asyncio.run(two_rounds()) == ["rolled-back", "held"]
    assert node.tried == ["bad"]  # the second round did not stop and restart anything
    entry = FailedReleases(tmp_path).find("md5:bad")
    assert entry is not None and entry.version == "1.1.0" and entry.step == "probation"
    assert "BACKOFF" in entry.reason

    state = _once(node, link, tmp_path)  # a new process: the memory is on disk
    assert node.tried == ["bad"]
    assert state["last_result"] == "held" and state["current_version"] == "1.0.0"
    assert "clear-failed 1.1.0" in state["last_error"] and "md5:bad" in state["last_error"]
    assert link.confirmed == []  # held is not applied: never confirmed


def test_a_newer_release_is_applied_and_clearing_lets_the_failed_one_be_retried(tmp_path: Path) -> None:
    node = Node(Version.parse("1.0.0"), fail={"bad": probation_failure()})
    link = Link(event("1.1.0", "bad"))
    assert _once(node, link, tmp_path)["last_result"] == "rolled-back"
    link.offer = event("1.1.1", "good")
    assert _once(node, link, tmp_path)["last_result"] == "upgraded"
    assert node.tried == ["bad", "good"] and node.version == Version.parse("1.1.1")

    # the same version re-uploaded (another md5) is another release: tried
    node2, link2 = Node(Version.parse("1.0.0")), Link(event("1.1.0", "bad"))
    assert _once(node2, link2, tmp_path)["last_result"] == "held"
    assert [r.version for r in FailedReleases(tmp_path).clear("1.1.0")] == ["1.1.0"]
    assert _once(node2, link2, tmp_path)["last_result"] == "upgraded"
    assert node2.tried == ["bad"]


def test_only_the_release_own_failures_are_remembered(tmp_path: Path) -> None:
    node = Node(Version.parse("1.0.0"), fail={
        "net": ReleaseRefused("FetchFailed: connection reset", step="fetch"),
        "disk": RolledBack("OSError: No space left on device", step="apply")})
    for md5 in ("net", "disk"):
        link = Link(event("1.1.0", md5))
        _once(node, link, tmp_path)
        _once(node, link, tmp_path)
    assert node.tried == ["net", "net", "disk", "disk"]  # retried: the node's trouble, not the release's
    assert FailedReleases(tmp_path).load() == []


def test_a_publisher_release_is_known_by_its_signed_hash(tmp_path: Path) -> None:
    node = Node(Version.parse("1.0.0"), fail={"a" * 64: probation_failure()})
    offered = ReleaseEvent(Version.parse("1.1.0"), Upgrade(flist="http://h/zos.fl", hash="a" * 64))

    class Watcher:
        async def check(self) -> ReleaseEvent | None:
            return offered if node.version < offered.version else None

        def confirm(self, version: Version) -> None:
            pass

    memory = ReleaseMemory(FailedReleases(tmp_path))
    parts = NodeParts(upgrader=node, boot=node, memory=memory, policies=[
        ReleasePolicy(node, object(), lambda current, jump: Watcher(), memory=memory)])
    for _ in range(2):
        asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True))
    assert node.tried == ["a" * 64]
    assert FailedReleases(tmp_path).find("blake2b:" + "a" * 64) is not None


def test_a_damaged_memory_applies_nothing_and_says_how_to_clear_it(tmp_path: Path) -> None:
    (tmp_path / FAILED_FILE).write_text('{"releases": [{"id": 3')
    node = Node(Version.parse("1.0.0"))
    link = Link(event("1.1.0", "good"))
    state = _once(node, link, tmp_path)
    assert node.tried == [] and state["last_result"] == "error"
    assert FAILED_FILE in state["last_error"] and "clear-failed" in state["last_error"]
    with pytest.raises(FailedReleasesError, match="not a failed-release list"):
        FailedReleases(tmp_path).load()
    assert FailedReleases(tmp_path).clear() == []  # clearing everything removes the damaged file
    assert _once(node, link, tmp_path)["last_result"] == "upgraded"


def test_clear_failed_says_it_removed_a_damaged_memory(tmp_path: Path) -> None:
    state = tmp_path / NodeConfig().state_dir.lstrip("/")
    state.mkdir(parents=True)
    (state / FAILED_FILE).write_text('{"format": 1, "releases": [')
    shown = CliRunner().invoke(cli, ["clear-failed", "--root", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert shown.output == f"removed the unreadable {state / FAILED_FILE}: no release is held now\n"
    assert not (state / FAILED_FILE).exists()
    shown = CliRunner().invoke(cli, ["clear-failed", "--root", str(tmp_path)])
    assert shown.output == f"no failed releases held in {state / FAILED_FILE}\n"


def test_metrics_count_held_checks_and_the_releases_held(tmp_path: Path) -> None:
    metrics = start_metrics(True, "127.0.0.1", free_port())
    try:
        node = Node(Version.parse("1.0.0"), fail={"bad": probation_failure()})
        link = Link(event("1.1.0", "bad"))
        memory = ReleaseMemory(FailedReleases(tmp_path))
        parts = NodeParts(upgrader=node, boot=node, memory=memory,
                          policies=[BootPolicy(node, object(), link.watcher, memory=memory)])
        for _ in range(3):
            asyncio.run(Daemon(parts, state_dir=tmp_path, metrics=metrics).run(once=True))
        assert isinstance(metrics, PrometheusMetrics)
        value = metrics.registry.get_sample_value
        assert value("zos_upgrade_upgrades_total", {"result": "rolled-back"}) == 1
        assert value("zos_upgrade_checks_total", {"result": "held"}) == 2
        assert value("zos_upgrade_failed_releases_held") == 1
        FailedReleases(tmp_path).clear()
        link.offer = None
        asyncio.run(Daemon(parts, state_dir=tmp_path, metrics=metrics).run(once=True))
        assert value("zos_upgrade_failed_releases_held") == 0
    finally:
        metrics.close()
