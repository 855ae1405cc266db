"""The daemon's loop and policies: what to apply, in which order, what to confirm, what to record, how
it exits.

The layers below the daemon are in-memory stand-ins that keep to the upgrader and watcher
contracts (``check()``/``confirm()``, the ``UpgradeFailed`` subclasses), so each rule is checked
alone and fast; tests/e2e/test_daemon*.py run the same rules on the real stack.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import free_port
from zos_upgrade.config import Config, parse_config
from zos_upgrade.daemon import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RESTART,
    BinsPolicy,
    BootPolicy,
    Daemon,
    NodeParts,
    ReleasePolicy,
    run_daemon,
)
from zos_upgrade.errors import ConfigError, ZosUpgradeError
from zos_upgrade.lock import DaemonLock
from zos_upgrade.metrics import NullMetrics, PrometheusMetrics, start_metrics
from zos_upgrade.upgrade import ReleaseRefused, RestartNeeded, RollbackIncomplete, RolledBack, UpgradeFailed
from zos_upgrade.versions import Version

LINK = "tf/zos:latest.fl"


def V(text: str) -> Version:
    return Version.parse(text)


@dataclass(frozen=True)
class Ev:
    name: str
    ver: str

    def version(self) -> Version:
        return V(self.ver)

    def fqdn(self) -> str:
        return self.name


@dataclass(frozen=True)
class Release:
    version: Version
    upgrade: str


@dataclass(frozen=True)
class RepoEv:
    to_add: list[Ev]
    to_del: list[Ev]
    all: dict[str, Ev]


@dataclass
class Report:
    bytes_downloaded: int = 100
    blocks_from_cache: int = 3
    phases: dict[str, float] = field(default_factory=lambda: {"fetch": 0.5})


@dataclass
class FakeNode:
    """Boot files + upgrader in one: the upgrader writes what Boot reads, as the real ones do."""

    event: Ev | None = None
    bins: dict[str, Ev] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)  # target version or fqdn -> error
    gate: asyncio.Event | None = None
    garbled: bool = False

    # Boot
    def detect_boot_method(self) -> str:
        return "flist" if self.event else "other"

    def current(self) -> Ev:
        if self.garbled:
            raise ZosUpgradeError("boot flist info file /tmp/flist.info is not valid JSON")
        assert self.event is not None
        return self.event

    def current_bins(self) -> dict[str, Ev]:
        return dict(self.bins)

    # Upgrader
    async def recover(self) -> str | None:
        self.calls.append(("recover",))
        return None

    def sync_boot_files(self) -> None:
        self.calls.append(("sync_boot_files",))

    async def _work(self, key: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if key in self.fail:
            raise self.fail[key]

    async def install_from(self, source: Any, candidate: Any, target: str) -> Report:
        assert source is SOURCE
        if target == "bin":
            return await self._install_binary(candidate)
        if isinstance(candidate, Release):
            return await self._upgrade_release(candidate)
        return await self._upgrade(candidate)

    async def _upgrade(self, to_event: Ev) -> Report:
        self.calls.append(("upgrade", self.event, to_event))  # what the node ran before, and the target
        await self._work(to_event.ver)
        self.event = to_event
        self.garbled = False
        return Report()

    async def _upgrade_release(self, release: Release) -> Report:
        self.calls.append(("release", str(release.version), release.upgrade))
        await self._work(str(release.version))
        self.event = Ev("pub/zos.fl", str(release.version))
        return Report()

    async def _install_binary(self, flist: Ev) -> Report:
        self.calls.append(("install", flist.name))
        await self._work(flist.name)
        self.bins[flist.name] = flist
        return Report()

    async def uninstall_binary(self, fqdn: str) -> Report:
        self.calls.append(("uninstall", fqdn))
        await self._work(fqdn)
        del self.bins[fqdn]
        return Report()

    def done(self, kind: str) -> list[Any]:
        return [c[1] if kind != "upgrade" else c[2].ver for c in self.calls if c[0] == kind]


@dataclass
class Hub:
    """What the source offers right now."""

    link: str | None = None
    repo: dict[str, Ev] = field(default_factory=dict)
    versions: list[str] = field(default_factory=list)
    down: bool = False
    refuse: set[str] = field(default_factory=set)


class SemverWatcher:
    def __init__(self, hub: Hub, current: Version) -> None:
        self.hub, self.current, self.confirmed = hub, current, list[Version]()
        self.started = current

    async def check(self) -> Ev | None:
        if self.hub.down:
            raise ZosUpgradeError("http://127.0.0.1:1/api/flist/tf/zos:latest.fl/light: connection refused")
        if self.hub.link is None or V(self.hub.link) <= self.current:
            return None
        return Ev(LINK, self.hub.link)

    def confirm(self, version: Version) -> None:
        self.confirmed.append(version)
        self.current = max(self.current, version)


class RepoWatcher:
    def __init__(self, hub: Hub, current: dict[str, Ev]) -> None:
        self.hub, self.current = hub, dict(current)

    async def check(self) -> RepoEv | None:
        add = [e for k, e in sorted(self.hub.repo.items()) if self.current.get(k) != e]
        gone = [e for k, e in sorted(self.current.items()) if k not in self.hub.repo]
        return RepoEv(add, gone, dict(self.hub.repo)) if add or gone else None

    def confirm(self, all: dict[str, Ev]) -> None:
        self.current = dict(all)


class ReleaseWatcher:
    def __init__(self, hub: Hub, current: Version, jump: bool = False) -> None:
        self.hub, self.current, self.jump = hub, current, jump

    async def check(self) -> Release | None:
        due = sorted(V(v) for v in self.hub.versions if V(v) > self.current)
        if not due:
            return None
        version = due[-1] if self.jump else due[0]
        if str(version) in self.hub.refuse:
            raise ZosUpgradeError(f"release {version}: signature is not by a trusted key")
        return Release(version, f"release-object-{version}")

    def confirm(self, version: Version) -> None:
        self.current = max(self.current, version)


# the release source the policies hand to the upgrader; the fake upgrader checks it is passed through
SOURCE: Any = object()


def _parts(node: FakeNode, hub: Hub, *, bins: bool = False, publisher: bool = False,
           jump: bool = False) -> tuple[NodeParts, list[Any]]:
    made: list[Any] = []

    def keep(w: Any) -> Any:
        made.append(w)
        return w

    parts = NodeParts(upgrader=node, boot=node, sweep=lambda: node.calls.append(("sweep",)))
    if bins:
        parts.policies.append(BinsPolicy(node, SOURCE, lambda current: keep(RepoWatcher(hub, dict(current)))))
    if publisher:
        parts.policies.append(ReleasePolicy(
            node, SOURCE, lambda current, jmp: keep(ReleaseWatcher(hub, current, jmp)), jump_to_latest=jump))
    else:
        parts.policies.append(BootPolicy(node, SOURCE, lambda current: keep(SemverWatcher(hub, current))))
    return parts, made


def _once(parts: NodeParts, state: Path, **kw: Any) -> int:
    return asyncio.run(Daemon(parts, state_dir=state, **kw).run(once=True))


def _state(state_dir: Path) -> dict[str, Any]:
    return dict(json.loads((state_dir / "status.json").read_text()))


def failed(reason: str, step: str, rolled_back: bool = True, refused: bool = False) -> UpgradeFailed:
    kind = ReleaseRefused if refused else RolledBack if rolled_back else RollbackIncomplete
    return kind(reason, step=step)


# --- start-up and --once -------------------------------------------------------------------------


def test_start_up_sweeps_then_recovers_then_rebuilds_boot_files(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"))
    assert _once(_parts(node, Hub())[0], tmp_path) == EXIT_OK
    assert node.calls[:3] == [("sweep",), ("recover",), ("sync_boot_files",)]


def test_once_applies_a_newer_boot_flist_and_records_it(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"))
    parts, made = _parts(node, Hub(link="1.1.0"))
    assert _once(parts, tmp_path, source="hub x") == EXIT_OK
    [(_, frm, to)] = [c for c in node.calls if c[0] == "upgrade"]
    assert frm.ver == "1.0.0" and to.ver == "1.1.0"
    assert made[0].confirmed == [V("1.1.0")]
    state = _state(tmp_path)
    assert state["last_result"] == "upgraded" and state["current_version"] == "1.1.0"
    assert state["last_error"] is None and state["source"] == "hub x"
    assert state["last_upgrade"]["from"] == "1.0.0" and state["last_upgrade"]["to"] == "1.1.0"
    assert state["last_upgrade"]["bytes_downloaded"] == 100


def test_once_up_to_date_changes_nothing(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.1.0"))
    assert _once(_parts(node, Hub(link="1.1.0"))[0], tmp_path) == EXIT_OK
    assert node.done("upgrade") == []
    assert _state(tmp_path)["last_result"] == "up-to-date"


def test_once_rolled_back_upgrade_exits_1_says_why_and_is_not_confirmed(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"), fail={"1.2.0": failed("service web exited", "probation")})
    parts, made = _parts(node, Hub(link="1.2.0"))
    assert _once(parts, tmp_path) == EXIT_FAILED
    assert made[0].confirmed == []
    state = _state(tmp_path)
    assert state["last_result"] == "rolled-back" and state["current_version"] == "1.0.0"
    assert "probation" in state["last_error"] and "web exited" in state["last_error"]


def test_once_failure_without_rollback_is_rollback_incomplete(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"), fail={"1.2.0": failed("disk gone", "restore", rolled_back=False)})
    assert _once(_parts(node, Hub(link="1.2.0"))[0], tmp_path) == EXIT_FAILED
    assert _state(tmp_path)["last_result"] == "rollback-incomplete"


def test_once_refused_release_is_failed_not_rolled_back(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"), fail={"1.2.0": failed("block missing", "fetch", refused=True)})
    assert _once(_parts(node, Hub(link="1.2.0"))[0], tmp_path) == EXIT_FAILED
    state = _state(tmp_path)
    assert state["last_result"] == "failed" and state["current_version"] == "1.0.0"
    assert "block missing" in state["last_error"]


def test_once_with_unreachable_source_records_error(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"))
    assert _once(_parts(node, Hub(link="1.1.0", down=True))[0], tmp_path) == EXIT_FAILED
    state = _state(tmp_path)
    assert state["last_result"] == "error" and "connection refused" in state["last_error"]
    assert state["current_version"] == "1.0.0"


def test_first_install_upgrades_from_nothing(tmp_path: Path) -> None:
    node = FakeNode(None)
    parts, made = _parts(node, Hub(link="1.0.0"))
    assert _once(parts, tmp_path) == EXIT_OK
    [(_, frm, to)] = [c for c in node.calls if c[0] == "upgrade"]
    assert frm is None and to.ver == "1.0.0" and made[0].started == V("0.0.0")
    assert _state(tmp_path)["current_version"] == "1.0.0"


def test_garbled_boot_files_count_as_0_0_0(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"), garbled=True)
    parts, made = _parts(node, Hub(link="1.1.0"))
    assert _once(parts, tmp_path) == EXIT_OK
    assert made[0].started == V("0.0.0")  # the watcher starts from nothing: any version is newer
    assert node.done("upgrade") == ["1.1.0"]


def test_bins_installed_and_uninstalled_by_diff_before_the_boot_upgrade(tmp_path: Path) -> None:
    old, kept = Ev("bins/old.fl", "1.0.0"), Ev("bins/kept.fl", "1.0.0")
    node = FakeNode(Ev(LINK, "1.0.0"), bins={old.name: old, kept.name: kept})
    new, kept2 = Ev("bins/new.fl", "1.0.0"), Ev("bins/kept.fl", "1.0.1")
    parts, made = _parts(node, Hub(link="1.1.0", repo={new.name: new, kept2.name: kept2}), bins=True)
    assert _once(parts, tmp_path) == EXIT_OK
    order = [c[0] for c in node.calls if c[0] in ("install", "uninstall", "upgrade")]
    assert order == ["install", "install", "uninstall", "upgrade"]
    assert sorted(node.done("install")) == ["bins/kept.fl", "bins/new.fl"]
    assert node.done("uninstall") == ["bins/old.fl"]
    assert node.bins == {new.name: new, kept2.name: kept2}
    assert made[0].current == node.bins  # confirmed with what the repository holds
    # bins packages are not the node's release: last_upgrade records the boot upgrade only
    assert _state(tmp_path)["last_upgrade"]["to"] == "1.1.0"


def test_failed_bin_install_is_reported_not_confirmed_and_others_still_apply(tmp_path: Path) -> None:
    a, b = Ev("bins/a.fl", "1.0.0"), Ev("bins/b.fl", "1.0.0")
    node = FakeNode(Ev(LINK, "1.0.0"), fail={"bins/a.fl": failed("hook post-copy exited 3", "post-copy")})
    parts, made = _parts(node, Hub(repo={a.name: a, b.name: b}), bins=True)
    assert _once(parts, tmp_path) == EXIT_FAILED
    assert set(node.bins) == {"bins/b.fl"}
    assert made[0].current == {}  # proposed again next round
    assert "bins/a.fl" in _state(tmp_path)["last_error"]
    assert _state(tmp_path)["last_upgrade"] is None


# --- publisher mode ------------------------------------------------------------------------------


def test_publisher_versions_applied_one_at_a_time_in_order(tmp_path: Path) -> None:
    node = FakeNode(Ev("pub/zos.fl", "1.0.0"))
    parts, _ = _parts(node, Hub(versions=["0.9.0", "1.0.0", "1.2.0", "1.0.1", "2.0.0"]), publisher=True)
    assert _once(parts, tmp_path) == EXIT_OK
    assert node.done("release") == ["1.0.1", "1.2.0", "2.0.0"]
    assert next(c[2] for c in node.calls if c[0] == "release") == "release-object-1.0.1"
    assert _state(tmp_path)["current_version"] == "2.0.0"


def test_publisher_first_install_takes_latest_then_follows_one_at_a_time(tmp_path: Path) -> None:
    node = FakeNode(None)
    hub = Hub(versions=["1.0.0", "1.1.0", "2.0.0"])
    parts, made = _parts(node, hub, publisher=True)
    assert _once(parts, tmp_path) == EXIT_OK
    assert node.done("release") == ["2.0.0"]  # not every release ever published
    hub.versions += ["2.0.1", "2.1.0"]
    daemon = Daemon(parts, state_dir=tmp_path)

    async def two_rounds() -> None:
        await daemon.start_up()
        await daemon.round()

    asyncio.run(two_rounds())
    assert node.done("release") == ["2.0.0", "2.0.1", "2.1.0"]
    assert [w.jump for w in made] == [True, False, False]


def test_publisher_jump_to_latest_applies_only_latest(tmp_path: Path) -> None:
    node = FakeNode(Ev("pub/zos.fl", "1.0.0"))
    parts, _ = _parts(node, Hub(versions=["1.0.0", "1.0.1", "2.0.0"]), publisher=True, jump=True)
    assert _once(parts, tmp_path) == EXIT_OK
    assert node.done("release") == ["2.0.0"]


def test_publisher_stops_at_a_failed_version_never_skips_it(tmp_path: Path) -> None:
    node = FakeNode(Ev("pub/zos.fl", "1.0.0"), fail={"1.1.0": failed("migrate exited 1", "migrate")})
    parts, _ = _parts(node, Hub(versions=["1.0.1", "1.1.0", "1.2.0"]), publisher=True)
    assert _once(parts, tmp_path) == EXIT_FAILED
    assert node.done("release") == ["1.0.1", "1.1.0"]
    state = _state(tmp_path)
    assert state["current_version"] == "1.0.1" and state["last_result"] == "rolled-back"


def test_publisher_refused_release_changes_nothing(tmp_path: Path) -> None:
    node = FakeNode(Ev("pub/zos.fl", "1.0.0"))
    parts, _ = _parts(node, Hub(versions=["1.1.0"], refuse={"1.1.0"}), publisher=True)
    assert _once(parts, tmp_path) == EXIT_FAILED
    assert node.done("release") == []
    state = _state(tmp_path)
    assert state["current_version"] == "1.0.0" and "trusted key" in state["last_error"]


# --- the loop ------------------------------------------------------------------------------------


class Clockwork:
    """A sleep that records the delays and lets the test change the world between rounds."""

    def __init__(self, on_sleep: Any) -> None:
        self.delays: list[float] = []
        self.on_sleep = on_sleep

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.on_sleep(len(self.delays))
        await asyncio.sleep(0)


def test_follow_retries_a_failed_version_with_backoff_and_confirms_only_success(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"), fail={"1.2.0": failed("probation", "probation")})
    hub = Hub(link="1.2.0")
    parts, made = _parts(node, hub)
    daemon: Daemon

    def world(n: int) -> None:
        if n == 2:
            node.fail.clear()  # the operator fixed the release; the same version is retried
        if n == 4:
            daemon.request_stop()

    sleep = Clockwork(world)
    daemon = Daemon(parts, state_dir=tmp_path, interval=10, jitter=0, sleep=sleep)
    assert asyncio.run(daemon.run(once=False)) == EXIT_OK
    assert node.done("upgrade") == ["1.2.0", "1.2.0", "1.2.0"]
    assert made[0].confirmed == [V("1.2.0")]
    # after a failure the next look backs off (1-2 intervals, then 2-4); after success it is regular
    assert 10 <= sleep.delays[0] <= 20 and 20 <= sleep.delays[1] <= 40 and sleep.delays[2] == 10
    assert _state(tmp_path)["last_result"] == "up-to-date"


def test_follow_survives_the_source_going_away(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"))
    hub = Hub(link="1.1.0", down=True)
    parts, _ = _parts(node, hub)
    daemon: Daemon
    states: list[str] = []

    def world(n: int) -> None:
        states.append(_state(tmp_path)["last_result"])
        hub.down = n < 2
        if n == 3:
            daemon.request_stop()

    daemon = Daemon(parts, state_dir=tmp_path, interval=1, sleep=Clockwork(world))
    assert asyncio.run(daemon.run(once=False)) == EXIT_OK
    assert states == ["error", "error", "upgraded"]
    assert node.event == Ev(LINK, "1.1.0")


def test_stop_during_a_transaction_lets_it_finish_then_exits_0(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"))
    hub = Hub(link="1.1.0")
    parts, _ = _parts(node, hub)

    async def scenario() -> int:
        node.gate = asyncio.Event()
        daemon = Daemon(parts, state_dir=tmp_path, interval=0.01)
        task = asyncio.create_task(daemon.run(once=False))
        while not node.done("upgrade"):
            await asyncio.sleep(0.01)
        daemon.request_stop()  # mid-transaction: must not cancel it
        hub.link = "1.2.0"
        await asyncio.sleep(0.05)
        assert not task.done()
        node.gate.set()
        return await asyncio.wait_for(task, 5)

    assert asyncio.run(scenario()) == EXIT_OK
    assert node.done("upgrade") == ["1.1.0"]  # finished; 1.2.0 never started
    assert node.event == Ev(LINK, "1.1.0")
    assert _state(tmp_path)["current_version"] == "1.1.0"


def test_stop_while_idle_exits_0_at_once(tmp_path: Path) -> None:
    parts, _ = _parts(FakeNode(Ev(LINK, "1.0.0")), Hub())

    async def scenario() -> int:
        daemon = Daemon(parts, state_dir=tmp_path, interval=3600)
        task = asyncio.create_task(daemon.run(once=False))
        await asyncio.sleep(0.05)
        daemon.request_stop()
        return await asyncio.wait_for(task, 2)

    assert asyncio.run(scenario()) == EXIT_OK


# --- the process: restart exit code, metrics -----------------------------------------------------


def _config(root: Path, **metrics: Any) -> Config:
    text = f"""
[node]
root = "{root}"
state_dir = "/state"
[source]
hub = "http://127.0.0.1:1"
flist = "{LINK}"
[trust]
insecure = true
"""
    if metrics:
        text += "[metrics]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in metrics.items())
    return parse_config(text)


def test_restart_needed_ends_the_run_with_exit_75_and_releases_the_lock(tmp_path: Path) -> None:
    node = FakeNode(Ev(LINK, "1.0.0"), fail={"1.1.0": RestartNeeded("new /bin/zos-upgrade installed")})
    config = _config(tmp_path)
    assert run_daemon(config, once=True, parts=_parts(node, Hub(link="1.1.0"))[0]) == EXIT_RESTART == 75
    DaemonLock(config.state_dir).acquire()  # free again


def test_metrics_served_on_loopback_while_the_daemon_runs(tmp_path: Path) -> None:
    port = free_port()
    node = FakeNode(Ev(LINK, "1.0.0"))
    scraped: list[str] = []
    sync = node.sync_boot_files

    def sync_and_scrape() -> None:
        sync()
        scraped.append(httpx.get(f"http://127.0.0.1:{port}/metrics").text)

    node.sync_boot_files = sync_and_scrape  # type: ignore[method-assign]
    config = _config(tmp_path, enabled=True, port=port)
    assert run_daemon(config, once=True, parts=_parts(node, Hub(link="1.1.0"))[0]) == EXIT_OK
    assert "zos_upgrade_upgrade_duration_seconds" in scraped[0]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics")  # closed with the daemon


def test_metrics_count_checks_upgrades_bytes_and_reuse(tmp_path: Path) -> None:
    metrics = start_metrics(True, "127.0.0.1", free_port())
    try:
        # the rolled-back transaction had fetched 157 MB before probation failed: counted too
        partial = Report(bytes_downloaded=157_000_000, blocks_from_cache=0)
        bad = FakeNode(Ev(LINK, "1.1.0"), fail={"1.2.0": RolledBack("probation", step="probation",
                                                                   report=partial)})  # type: ignore[arg-type]
        assert asyncio.run(Daemon(_parts(bad, Hub(link="1.2.0"))[0], metrics=metrics).run(once=True)) == 1
        good = FakeNode(Ev(LINK, "1.0.0"))
        assert asyncio.run(Daemon(_parts(good, Hub(link="1.1.0"))[0], metrics=metrics).run(once=True)) == 0
        assert isinstance(metrics, PrometheusMetrics)
        value = metrics.registry.get_sample_value
        # the labels are the words `zos-upgrade status` prints
        assert value("zos_upgrade_checks_total", {"result": "rolled-back"}) == 1
        assert value("zos_upgrade_checks_total", {"result": "upgraded"}) == 1
        assert value("zos_upgrade_upgrades_total", {"result": "rolled-back"}) == 1
        assert value("zos_upgrade_upgrades_total", {"result": "upgraded"}) == 1
        assert value("zos_upgrade_downloaded_bytes_total") == 157_000_100
        assert value("zos_upgrade_blocks_reused_total") == 3
        assert value("zos_upgrade_upgrade_duration_seconds_count") == 2
    finally:
        metrics.close()


def test_metrics_refuse_a_non_loopback_host() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        start_metrics(True, "0.0.0.0", 9108)
    assert isinstance(start_metrics(False, "0.0.0.0", 9108), NullMetrics)
