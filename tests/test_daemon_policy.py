"""The daemon's policy (what to apply, what to confirm, what to record, how it exits).

The parts below the daemon are in-memory stand-ins that keep to the upgrader/watcher contracts, so
each rule is checked alone and fast; tests/e2e/test_daemon*.py run the same rules on the real stack.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import free_port
from zos_upgrade.config import Config, parse_config
from zos_upgrade.daemon import EXIT_FAILED, EXIT_OK, EXIT_RESTART, Daemon, NodeParts, run_daemon
from zos_upgrade.errors import ConfigError, ZosUpgradeError
from zos_upgrade.lock import DaemonLock
from zos_upgrade.metrics import NullMetrics, PrometheusMetrics, start_metrics
from zos_upgrade.upgrade.errors import RestartNeeded
from zos_upgrade.versions import Version


class Failed(ZosUpgradeError):
    """Shaped like upgrade.errors.UpgradeFailed."""

    def __init__(self, reason: str, *, step: str, rolled_back: bool) -> None:
        super().__init__(reason)
        self.reason, self.step, self.rolled_back = reason, step, rolled_back


@dataclass(frozen=True)
class Ev:
    name: str
    ver: str

    def version(self) -> Version:
        return Version.parse(self.ver)

    def fqdn(self) -> str:
        return self.name


@dataclass
class Report:
    bytes_downloaded: int = 100
    blocks_from_cache: int = 3


@dataclass
class FakeBoot:
    event: Ev | None = None

    def detect_boot_method(self) -> str:
        return "flist" if self.event else "other"

    def current(self) -> Ev:
        assert self.event is not None
        return self.event


@dataclass
class FakeUpgrader:
    boot: FakeBoot
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)  # target version or fqdn -> error
    bins: dict[str, Ev] = field(default_factory=dict)
    gate: asyncio.Event | None = None  # when set, a transaction waits for it

    async def recover(self) -> None:
        self.calls.append(("recover",))

    def sync_boot_files(self) -> None:
        self.calls.append(("sync_boot_files",))

    async def _work(self, key: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if key in self.fail:
            raise self.fail[key]

    async def upgrade(self, from_event: Ev | None, to_event: Ev) -> Report:
        self.calls.append(("upgrade", from_event, to_event))
        await self._work(to_event.ver)
        self.boot.event = to_event
        return Report()

    async def upgrade_release(self, release: Any, version: Version) -> Report:
        self.calls.append(("release", str(version), release))
        await self._work(str(version))
        self.boot.event = Ev("pub/zos.fl", str(version))
        return Report()

    async def install_binary(self, item: Ev) -> Report:
        self.calls.append(("install", item.name))
        await self._work(item.name)
        self.bins[item.name] = item
        return Report()

    async def uninstall_binary(self, fqdn: str) -> None:
        self.calls.append(("uninstall", fqdn))
        await self._work(fqdn)
        del self.bins[fqdn]

    def installed_boot(self) -> Ev | None:
        return self.boot.event

    def installed_bins(self) -> dict[str, Ev]:
        return dict(self.bins)


@dataclass
class FakeSweeper:
    calls: list[tuple[Any, ...]]

    def sweep(self) -> None:
        self.calls.append(("sweep",))


class FakeWatcher:
    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.confirmed: list[Any] = []

    async def watch(self) -> AsyncIterator[Any]:
        for event in self.events:
            yield event
        await asyncio.Event().wait()  # then poll forever

    def confirm(self, value: Any) -> None:
        self.confirmed.append(value)


@dataclass
class FakeRepoWatcher:
    remote: dict[str, Ev]
    current: dict[str, Ev]

    async def diff(self) -> tuple[list[Ev], list[Ev], list[Ev]]:
        add = [e for k, e in self.remote.items() if self.current.get(k) != e]
        gone = [e for k, e in self.current.items() if k not in self.remote]
        return list(self.remote.values()), add, gone


@dataclass
class FakePublisher:
    versions: list[str]
    refuse: set[str] = field(default_factory=set)

    async def list(self) -> list[Version]:
        return [Version.parse(v) for v in self.versions]

    async def latest(self) -> Version:
        return max(Version.parse(v) for v in self.versions)

    async def get(self, version: Version) -> str:
        if str(version) in self.refuse:
            raise ZosUpgradeError(f"release {version}: signature not by a trusted key")
        return f"release-object-{version}"


def _node(current: str | None = "1.0.0", hub_latest: str | None = None) -> tuple[NodeParts, FakeUpgrader]:
    boot = FakeBoot(Ev("tf/zos:latest.fl", current) if current else None)
    upgrader = FakeUpgrader(boot)
    parts = NodeParts(upgrader=upgrader, flister=FakeSweeper(upgrader.calls), boot=boot)

    async def check_boot(ver: Version) -> Ev | None:
        if hub_latest is None or Version.parse(hub_latest) <= ver:
            return None
        return Ev("tf/zos:latest.fl", hub_latest)

    parts.check_boot = check_boot
    return parts, upgrader


def _state(state_dir: Path) -> dict[str, Any]:
    return dict(json.loads((state_dir / "status.json").read_text()))


def test_start_up_sweeps_then_recovers_then_rebuilds_boot_files(tmp_path: Path) -> None:
    parts, up = _node()
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_OK
    assert [c[0] for c in up.calls[:3]] == ["sweep", "recover", "sync_boot_files"]


def test_once_applies_a_newer_boot_flist_and_records_it(tmp_path: Path) -> None:
    parts, up = _node("1.0.0", "1.1.0")
    clock = iter(range(1000, 2000)).__next__
    daemon = Daemon(parts, state_dir=tmp_path, source="hub/tf/zos:latest.fl", clock=lambda: float(clock()))
    assert asyncio.run(daemon.run(once=True)) == EXIT_OK
    [(_, frm, to)] = [c for c in up.calls if c[0] == "upgrade"]
    assert frm.ver == "1.0.0" and to.ver == "1.1.0"
    state = _state(tmp_path)
    assert state["last_result"] == "upgraded" and state["current_version"] == "1.1.0"
    assert state["last_error"] is None and state["source"] == "hub/tf/zos:latest.fl"
    assert state["last_upgrade"]["from"] == "1.0.0" and state["last_upgrade"]["to"] == "1.1.0"
    assert state["last_upgrade"]["bytes_downloaded"] == 100


def test_once_up_to_date_changes_nothing(tmp_path: Path) -> None:
    parts, up = _node("1.1.0", "1.1.0")
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_OK
    assert not [c for c in up.calls if c[0] == "upgrade"]
    assert _state(tmp_path)["last_result"] == "up-to-date"


def test_once_rolled_back_upgrade_exits_1_and_says_why(tmp_path: Path) -> None:
    parts, up = _node("1.0.0", "1.2.0")
    up.fail["1.2.0"] = Failed("service web exited during probation", step="probation", rolled_back=True)
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_FAILED
    state = _state(tmp_path)
    assert state["last_result"] == "rolled-back" and state["current_version"] == "1.0.0"
    assert "probation" in state["last_error"] and "web exited" in state["last_error"]


def test_once_failure_without_rollback_is_failed(tmp_path: Path) -> None:
    parts, up = _node("1.0.0", "1.2.0")
    up.fail["1.2.0"] = Failed("block abc missing on the hub", step="fetch", rolled_back=False)
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_FAILED
    assert _state(tmp_path)["last_result"] == "failed"


def test_once_with_unreachable_source_records_error(tmp_path: Path) -> None:
    parts, _ = _node("1.0.0")

    async def down(ver: Version) -> None:
        raise ZosUpgradeError("http://127.0.0.1:1/api/flist/tf/zos:latest.fl/light: connection refused")

    parts.check_boot = down
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_FAILED
    state = _state(tmp_path)
    assert state["last_result"] == "error" and "connection refused" in state["last_error"]


def test_first_install_upgrades_from_nothing(tmp_path: Path) -> None:
    parts, up = _node(None, "1.0.0")
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_OK
    [(_, frm, to)] = [c for c in up.calls if c[0] == "upgrade"]
    assert frm is None and to.ver == "1.0.0"
    assert _state(tmp_path)["current_version"] == "1.0.0"


def test_bins_installed_and_uninstalled_by_diff(tmp_path: Path) -> None:
    parts, up = _node("1.0.0")
    old, kept = Ev("bins/old.fl", "1.0.0"), Ev("bins/kept.fl", "1.0.0")
    up.bins = {old.name: old, kept.name: kept}
    new, kept2 = Ev("bins/new.fl", "1.0.0"), Ev("bins/kept.fl", "1.0.1")
    parts.bins_watcher = lambda current: FakeRepoWatcher({new.name: new, kept2.name: kept2}, dict(current))
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_OK
    assert sorted(c for c in up.calls if c[0] in ("install", "uninstall")) == [
        ("install", "bins/kept.fl"), ("install", "bins/new.fl"), ("uninstall", "bins/old.fl")]
    assert set(up.bins) == {"bins/new.fl", "bins/kept.fl"} and up.bins["bins/kept.fl"].ver == "1.0.1"


def test_failed_bin_install_is_reported_and_others_still_apply(tmp_path: Path) -> None:
    parts, up = _node("1.0.0")
    a, b = Ev("bins/a.fl", "1.0.0"), Ev("bins/b.fl", "1.0.0")
    up.fail["bins/a.fl"] = Failed("hook post-copy exited 3", step="post-copy", rolled_back=True)
    parts.bins_watcher = lambda current: FakeRepoWatcher({a.name: a, b.name: b}, dict(current))
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_FAILED
    assert set(up.bins) == {"bins/b.fl"}
    assert "bins/a.fl" in _state(tmp_path)["last_error"]


def _publisher_node(current: str, versions: list[str]) -> tuple[NodeParts, FakeUpgrader, FakePublisher]:
    parts, up = _node(current)
    parts.check_boot = None
    pub = FakePublisher(versions)
    parts.publisher = pub
    return parts, up, pub


def test_publisher_versions_applied_one_at_a_time_in_order(tmp_path: Path) -> None:
    parts, up, _ = _publisher_node("1.0.0", ["0.9.0", "1.0.0", "1.2.0", "1.0.1", "2.0.0"])
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_OK
    assert [c[1] for c in up.calls if c[0] == "release"] == ["1.0.1", "1.2.0", "2.0.0"]
    assert next(c[2] for c in up.calls if c[0] == "release") == "release-object-1.0.1"
    assert _state(tmp_path)["current_version"] == "2.0.0"


def test_publisher_jump_to_latest_applies_only_latest(tmp_path: Path) -> None:
    parts, up, _ = _publisher_node("1.0.0", ["1.0.0", "1.0.1", "2.0.0"])
    assert asyncio.run(Daemon(parts, state_dir=tmp_path, jump_to_latest=True).run(once=True)) == EXIT_OK
    assert [c[1] for c in up.calls if c[0] == "release"] == ["2.0.0"]


def test_publisher_stops_at_a_failed_version_never_skips_it(tmp_path: Path) -> None:
    parts, up, _ = _publisher_node("1.0.0", ["1.0.1", "1.1.0", "1.2.0"])
    up.fail["1.1.0"] = Failed("migrate exited 1", step="migrate", rolled_back=True)
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_FAILED
    assert [c[1] for c in up.calls if c[0] == "release"] == ["1.0.1", "1.1.0"]
    state = _state(tmp_path)
    assert state["current_version"] == "1.0.1" and state["last_result"] == "rolled-back"


def test_publisher_refused_release_changes_nothing(tmp_path: Path) -> None:
    parts, up, pub = _publisher_node("1.0.0", ["1.1.0"])
    pub.refuse.add("1.1.0")
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_FAILED
    assert not [c for c in up.calls if c[0] == "release"]
    state = _state(tmp_path)
    assert state["current_version"] == "1.0.0" and "trusted key" in state["last_error"]


async def _until(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


def test_follow_confirms_only_after_success(tmp_path: Path) -> None:
    parts, up = _node("1.0.0")
    parts.check_boot = None
    watchers: list[FakeWatcher] = []
    events = [Ev("tf/zos:latest.fl", v) for v in ("1.2.0", "1.1.0", "1.3.0")]
    up.fail["1.2.0"] = Failed("probation", step="probation", rolled_back=True)

    def factory(current: Version) -> FakeWatcher:
        watchers.append(FakeWatcher(events))
        return watchers[-1]

    parts.boot_watcher = factory

    async def scenario() -> int:
        daemon = Daemon(parts, state_dir=tmp_path)
        task = asyncio.create_task(daemon.run(once=False))
        await _until(lambda: up.boot.event is not None and up.boot.event.ver == "1.3.0")
        daemon.request_stop()
        return await task

    assert asyncio.run(scenario()) == EXIT_OK
    assert [c[2].ver for c in up.calls if c[0] == "upgrade"] == ["1.2.0", "1.1.0", "1.3.0"]
    assert watchers[0].confirmed == [Version.parse("1.1.0"), Version.parse("1.3.0")]


def test_follow_retries_a_watcher_whose_first_check_fails(tmp_path: Path) -> None:
    parts, up = _node("1.0.0")
    parts.check_boot = None
    made: list[int] = []

    class Broken(FakeWatcher):
        async def watch(self) -> AsyncIterator[Any]:
            raise ZosUpgradeError("hub unreachable")
            yield  # pragma: no cover

    def factory(current: Version) -> FakeWatcher:
        made.append(1)
        return Broken([]) if len(made) < 3 else FakeWatcher([Ev("tf/zos:latest.fl", "1.1.0")])

    parts.boot_watcher = factory
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    async def scenario() -> int:
        daemon = Daemon(parts, state_dir=tmp_path, sleep=fake_sleep, retry_delay=2.0)
        task = asyncio.create_task(daemon.run(once=False))
        await _until(lambda: up.boot.event is not None and up.boot.event.ver == "1.1.0")
        daemon.request_stop()
        return await task

    assert asyncio.run(scenario()) == EXIT_OK
    assert slept == [2.0, 4.0]
    assert _state(tmp_path)["last_result"] == "upgraded"


def test_stop_during_a_transaction_lets_it_finish_then_exits_0(tmp_path: Path) -> None:
    parts, up = _node("1.0.0")
    parts.check_boot = None
    watcher = FakeWatcher([Ev("tf/zos:latest.fl", "1.1.0"), Ev("tf/zos:latest.fl", "1.2.0")])
    parts.boot_watcher = lambda current: watcher

    async def scenario() -> int:
        up.gate = asyncio.Event()
        daemon = Daemon(parts, state_dir=tmp_path)
        task = asyncio.create_task(daemon.run(once=False))
        await _until(lambda: any(c[0] == "upgrade" for c in up.calls))
        daemon.request_stop()  # mid-transaction: must not cancel it
        await asyncio.sleep(0.05)
        assert not task.done()
        up.gate.set()
        return await task

    assert asyncio.run(scenario()) == EXIT_OK
    # the running transaction completed; the next event was not started
    assert [c[2].ver for c in up.calls if c[0] == "upgrade"] == ["1.1.0"]
    assert up.boot.event is not None and up.boot.event.ver == "1.1.0"
    assert _state(tmp_path)["current_version"] == "1.1.0"


def test_stop_while_idle_exits_0_at_once(tmp_path: Path) -> None:
    parts, _ = _node("1.0.0")
    parts.check_boot = None
    parts.boot_watcher = lambda current: FakeWatcher([])

    async def scenario() -> int:
        daemon = Daemon(parts, state_dir=tmp_path)
        task = asyncio.create_task(daemon.run(once=False))
        await asyncio.sleep(0.05)
        daemon.request_stop()
        return await asyncio.wait_for(task, 2)

    assert asyncio.run(scenario()) == EXIT_OK


def test_garbled_boot_files_count_as_0_0_0(tmp_path: Path) -> None:
    parts, up = _node("1.0.0", "1.1.0")

    class Garbled(FakeBoot):
        def current(self) -> Ev:
            raise ZosUpgradeError("boot flist info file /tmp/flist.info is not valid JSON")

    parts.boot = Garbled(Ev("x/y", "1.0.0"))
    assert asyncio.run(Daemon(parts, state_dir=tmp_path).run(once=True)) == EXIT_OK
    [(_, frm, _to)] = [c for c in up.calls if c[0] == "upgrade"]
    assert frm is None


def _config(root: Path, **metrics: Any) -> Config:
    text = f"""
[node]
root = "{root}"
state_dir = "/state"
[source]
hub = "http://127.0.0.1:1"
flist = "tf/zos:latest.fl"
"""
    if metrics:
        text += "[metrics]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in metrics.items())
    return parse_config(text)


def test_restart_needed_ends_the_run_with_exit_75_and_releases_the_lock(tmp_path: Path) -> None:
    parts, up = _node("1.0.0", "1.1.0")
    up.fail["1.1.0"] = RestartNeeded("new /bin/zos-upgrade installed; restart to continue")
    config = _config(tmp_path)
    assert run_daemon(config, once=True, parts=parts) == EXIT_RESTART == 75
    DaemonLock(config.state_dir).acquire()  # free again


def test_metrics_count_checks_upgrades_bytes_and_reuse(tmp_path: Path) -> None:
    port = free_port()
    parts, up = _node("1.0.0", "1.1.0")
    config = _config(tmp_path, enabled=True, port=port)
    seen: list[str] = []

    async def scrape_after_check(ver: Version) -> Ev | None:
        return Ev("tf/zos:latest.fl", "1.1.0") if ver < Version.parse("1.1.0") else None

    parts.check_boot = scrape_after_check
    orig_sync = up.sync_boot_files

    def sync_and_scrape() -> None:
        orig_sync()
        # the endpoint is up from the start (on loopback only)
        seen.append(httpx.get(f"http://127.0.0.1:{port}/metrics").text)

    up.sync_boot_files = sync_and_scrape  # type: ignore[method-assign]
    assert run_daemon(config, once=True, parts=parts) == EXIT_OK
    assert "zos_upgrade_checks_total" in seen[0]
    # served only while the daemon runs; the registry is the daemon's: read it back by a second run
    parts2, up2 = _node("1.1.0", "1.2.0")
    up2.fail["1.2.0"] = Failed("probation", step="probation", rolled_back=True)
    metrics = start_metrics(True, "127.0.0.1", free_port())
    try:
        daemon = Daemon(parts2, metrics=metrics)
        assert asyncio.run(daemon.run(once=True)) == EXIT_FAILED
        parts3, _ = _node("1.0.0", "1.1.0")
        assert asyncio.run(Daemon(parts3, metrics=metrics).run(once=True)) == EXIT_OK
        assert isinstance(metrics, PrometheusMetrics)
        value = metrics.registry.get_sample_value
        assert value("zos_upgrade_checks_total", {"result": "ok"}) == 2
        assert value("zos_upgrade_upgrades_total", {"result": "rolled_back"}) == 1
        assert value("zos_upgrade_upgrades_total", {"result": "success"}) == 1
        assert value("zos_upgrade_downloaded_bytes_total") == 100
        assert value("zos_upgrade_blocks_reused_total") == 3
        assert value("zos_upgrade_upgrade_duration_seconds_count") == 2
    finally:
        metrics.close()


def test_metrics_refuse_a_non_loopback_host() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        start_metrics(True, "0.0.0.0", 9108)
    assert isinstance(start_metrics(False, "0.0.0.0", 9108), NullMetrics)
