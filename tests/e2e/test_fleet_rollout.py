"""Fleet rollout end to end: real hub, real supervisord nodes (each in its own root), the real daemon.

* ``periodic``: a maintenance window keeps a node waiting until it opens (the daemon in this process
  over the real parts, with an injected clock: nothing sleeps);
* a phased rollout plan fed to the daemon's gate: the node upgrades once the percentage covers its
  bucket (injected clock);
* ``fleet_lock``: several nodes at once (``zos-upgrade daemon --once`` each) against the hub's FleetLock
  endpoint hold at most N slots together, and all upgrade;
* a node whose lock server is down waits (services untouched) and proceeds when it comes back;
* a slot held by a daemon killed mid-transaction is given back at the next start; SIGTERM ends a
  wait for a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.e2e.daemon_node import STATE, Node, clean_env, wait_for
from tests.support.node import REPO_NAME, Sandbox, service_release
from tests.support.procs import REPO, free_port, serving, stop_process, zos_upgrade_cmd
from tests.support.supervisord import RunningSupervisord, running_supervisord
from zos_upgrade.config import load_config
from zos_upgrade.daemon import Daemon
from zos_upgrade.daemon.wiring import build
from zos_upgrade.hubserver.fleetlock import STATE_FILE
from zos_upgrade.rollout import bucket, parse_plan

# 2026-11-30 was a Monday
MONDAY = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
SAT_2230 = MONDAY + 5 * 86400 + 22 * 3600 + 30 * 60


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def in_process_daemon(node: Node, clock: Clock, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                      **build_options: Any) -> tuple[Daemon, Callable[[], Any]]:
    """The daemon over the real parts of the node's config (hub, supervisord, upgrader), its clock
    (and sleep) injected; returns it and the closer of its parts."""
    config = load_config(node.config)
    parts = build(config, clock=clock, **build_options)
    daemon = Daemon(parts, state_dir=config.state_dir, source="test", interval=600, clock=clock, sleep=sleep)
    return daemon, parts.aclose


def cli_status(config: Path) -> dict[str, Any]:
    proc = subprocess.run(zos_upgrade_cmd("status", "--config", str(config), "--json"), capture_output=True,
                          text=True, timeout=60, check=True, cwd=REPO, env=clean_env())
    return dict(json.loads(proc.stdout))


PERIODIC = """[rollout]
strategy = "periodic"
[[rollout.periodic.window]]
days = ["Sat"]
start_time = "22:30"
length_minutes = 60
"""


def test_a_window_keeps_the_node_waiting_until_it_opens(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0  # first install, strategy immediate
    node.write_config(upgrade=PERIODIC)
    node.release("1.1.0")
    clock = Clock(MONDAY + 12 * 3600)  # a Monday noon: the window is on Saturday night
    daemon, close = in_process_daemon(node, clock)

    async def run() -> None:
        try:
            await daemon.start_up()
            outcome = await daemon.round()
            assert outcome.result == "waiting" and "maintenance window" in outcome.detail
            assert node.box.version_file("alpha") == "1.0.0"
            state = node.status()
            assert state["strategy"] == "periodic" and state["next_window"] == SAT_2230
            assert state["last_result"] == "waiting" and "Sat 2026-12-05 22:30 UTC" in state["last_error"]
            shown = cli_status(node.config)
            assert shown["fleet"]["strategy"] == "periodic" and shown["fleet"]["next_window"] == SAT_2230
            assert shown["fleet"]["id"] == state["node_id"] and shown["fleet"]["group"] == "default"
            clock.now = SAT_2230 - 1
            assert (await daemon.round()).result == "waiting"
            assert node.box.version_file("alpha") == "1.0.0"
            clock.now = SAT_2230 + 60  # inside the window: the transaction starts
            outcome = await daemon.round()
            assert outcome.result == "upgraded", outcome.detail
            assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
            assert node.status()["window_closes"] == SAT_2230 + 3600
        finally:
            await close()

    asyncio.run(run())

    # a waiting daemon looks again as the next window opens, not a whole interval later
    node.release("1.2.0")
    clock.now = SAT_2230 + 7 * 86400 - 300  # five minutes before next Saturday's window
    naps: list[float] = []

    async def nap(delay: float) -> None:
        naps.append(delay)
        looping.request_stop()  # as SIGTERM does: the idle daemon's sleep is cancelled
        await asyncio.sleep(3600)

    looping, close_looping = in_process_daemon(node, clock, sleep=nap)

    async def loop() -> None:
        try:
            assert await looping.run(once=False) == 0
        finally:
            await close_looping()

    asyncio.run(loop())
    assert naps == [300] and node.status()["last_result"] == "waiting"


def test_a_phased_rollout_starts_the_node_once_it_covers_its_bucket(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.write_config(upgrade='[rollout]\nstrategy = "immediate"\n')
    node.config.write_text(node.config.read_text().replace("[node]\n", '[node]\nid = "node-7"\n', 1))
    node.release("1.1.0")
    start = MONDAY
    plan = parse_plan({"start": "2026-11-30T00:00:00Z", "duration": 10_000})
    mine = bucket("node-7", "1.1.0")
    admitted_at = start + 10_000 * mine / 100
    clock = Clock(admitted_at - 5)
    daemon, close = in_process_daemon(node, clock, plans=lambda v: plan if v == "1.1.0" else None)

    async def run() -> None:
        try:
            await daemon.start_up()
            outcome = await daemon.round()
            assert outcome.result == "waiting" and f"bucket is {mine:.1f}" in outcome.detail
            assert node.box.version_file("alpha") == "1.0.0"
            clock.now = admitted_at + 5
            outcome = await daemon.round()
            assert outcome.result == "upgraded", outcome.detail
            assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
        finally:
            await close()

    asyncio.run(run())


# --- fleet_lock: several nodes, one hub ------------------------------------------------------------


@dataclass
class FleetNode:
    name: str
    box: Sandbox
    sd: RunningSupervisord
    config: Path
    log: Path

    @property
    def link(self) -> str:
        return f"{self.name}:latest.fl"

    def release(self, version: str, **kw: Any) -> None:
        self.box.pack(f"{self.name}:{version}.fl", service_release(self.box.root, version, **kw))
        self.box.link(self.link, f"{self.name}:{version}.fl")

    def write_config(self, hub: str, lock: str, *, probation: float = 0.3) -> None:
        self.config.write_text(f"""
[node]
root = "{self.box.root}"
state_dir = "{STATE}"
id = "{self.name}"
group = "workers"
[source]
hub = "{hub}"
flist = "{REPO_NAME}/{self.link}"
interval = 0.5
jitter = 0
[supervisor]
kind = "supervisord"
socket = "/sup/supervisor.sock"
include_dir = "/sup/conf.d"
[upgrade]
self_update = false
probation = {probation}
stop_timeout = 3
hook_timeout = 10
[rollout]
strategy = "fleet_lock"
fleet_lock.base_url = "{lock}"
""")

    def start_once(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                zos_upgrade_cmd("--log-format", "json", "daemon", "--config", str(self.config), "--once"),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO, env=clean_env())

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    @property
    def state(self) -> Path:
        return self.box.root / STATE.lstrip("/")


@contextlib.contextmanager
def fleet(count: int, hub_config: str) -> Iterator[tuple[str, Path, list[FleetNode]]]:
    """``count`` nodes (each its own root and supervisord) and one hub serving their releases and
    the FleetLock endpoint (``hub_config``)."""
    base = Path(tempfile.mkdtemp(prefix="zu-fl-", dir="/tmp"))
    try:
        with contextlib.ExitStack() as stack:
            nodes = []
            for i in range(count):
                box = Sandbox(base, root=base / f"n{i}")
                sd = stack.enter_context(running_supervisord())
                box.expose_supervisor(sd.socket_path, sd.include_dir)
                nodes.append(FleetNode(f"node{i}", box, sd, base / f"n{i}.toml", base / f"n{i}.log"))
            (base / "hub.toml").write_text(hub_config)
            port = free_port()
            stack.enter_context(serving(zos_upgrade_cmd(
                "hub", "serve", "--root", str(base / "hub"), "--blocks", str(base / "blocks"), "--port",
                str(port), "--config", str(base / "hub.toml")), port, cwd=REPO))
            yield f"http://127.0.0.1:{port}", base / "hub", nodes
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_all(nodes: list[FleetNode], hub_root: Path, timeout: float = 240) -> int:
    """Start every node's daemon at once; the most slots the hub's state ever showed held."""
    procs = [n.start_once() for n in nodes]
    most = 0
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "the nodes did not finish"
            with contextlib.suppress(OSError, ValueError, KeyError):
                groups = json.loads((hub_root / STATE_FILE).read_text())["groups"]
                most = max(most, len(groups.get("workers", [])))
            time.sleep(0.01)
    finally:
        for p in procs:
            if p.poll() is None:
                stop_process(p)
    assert [p.returncode for p in procs] == [0] * len(procs), [n.log.read_text()[-2000:] for n in nodes]
    return most


def _held_intervals(node: FleetNode) -> list[tuple[float, float]]:
    taken = [e["ts"] for e in node.events() if e.get("msg") == "FleetLock slot taken"]
    released = [e["ts"] for e in node.events() if e.get("msg") == "FleetLock slot released"]
    assert len(taken) == len(released), node.log.read_text()[-2000:]
    return list(zip(taken, released, strict=True))


def test_fleet_lock_admits_at_most_n_nodes_at_once() -> None:
    with fleet(3, "[fleet_lock]\nslots = 1\ngroups = { workers = 2 }\n") as (hub, hub_root, nodes):
        for n in nodes:
            n.write_config(hub, hub, probation=1.5)  # each holds its slot for at least the probation
            n.release("1.0.0")
        assert _run_all(nodes, hub_root) <= 2  # the first install stops nothing, but takes a slot too
        for n in nodes:
            n.release("1.1.0")
        most = _run_all(nodes, hub_root)
        assert most == 2  # two at once, never three
        for n in nodes:
            assert n.box.wait_version("alpha", "1.1.0") == "1.1.0"
            assert not (n.state / "fleet-lock.json").exists()  # given back
        # the nodes' own view: at no instant did three of them hold a slot
        spans = [span for n in nodes for span in _held_intervals(n)]
        for start, _end in spans:
            assert sum(1 for s, e in spans if s <= start < e) <= 2
        waited = [n.name for n in nodes if any(e.get("msg") == "no FleetLock slot yet" for e in n.events())]
        assert waited  # somebody found the group full and waited for a slot
        assert json.loads((hub_root / STATE_FILE).read_text())["groups"] == {}


def test_a_node_whose_lock_server_is_down_waits_then_proceeds() -> None:
    lock_port = free_port()
    lock_url = f"http://127.0.0.1:{lock_port}"
    with fleet(1, "") as (hub, _hub_root, (n,)):
        n.write_config(hub, hub)
        n.release("1.0.0")
        proc = n.start_once()
        assert proc.wait(timeout=120) == 0, n.log.read_text()[-2000:]
        n.write_config(hub, lock_url)  # a lock server of its own, not started yet
        n.release("1.1.0")
        proc = n.start_once()
        lock_root = n.box.base / "lock-hub"
        lock_root.mkdir()
        try:
            wait_for(lambda: sum(e.get("msg") == "no FleetLock slot yet" for e in n.events()) >= 2,
                     timeout=60, what="the node to wait for its lock server")
            assert proc.poll() is None  # still waiting, never proceeding without the slot
            assert n.box.version_file("alpha") == "1.0.0"  # nothing stopped
            status = json.loads((n.state / "status.json").read_text())
            assert "waiting for a FleetLock slot" in status["waiting"] and status["running"] is not None
            with serving(zos_upgrade_cmd("hub", "serve", "--root", str(lock_root), "--port", str(lock_port)),
                         lock_port, cwd=REPO):
                assert proc.wait(timeout=120) == 0, n.log.read_text()[-2000:]
                assert json.loads((lock_root / STATE_FILE).read_text())["groups"] == {}  # released
        finally:
            if proc.poll() is None:
                stop_process(proc)
        assert n.box.wait_version("alpha", "1.1.0") == "1.1.0"
        assert not (n.state / "fleet-lock.json").exists()
        assert json.loads((n.state / "status.json").read_text())["waiting"] is None


def test_a_slot_held_when_the_daemon_was_killed_is_given_back_at_the_next_start() -> None:
    with fleet(1, "") as (hub, hub_root, (n,)):
        n.write_config(hub, hub)
        n.release("1.0.0")
        assert n.start_once().wait(timeout=120) == 0, n.log.read_text()[-2000:]
        n.release("1.1.0")
        with open(n.log, "ab") as log:  # killed (SIGKILL) right after the services stopped
            crash = subprocess.run(
                zos_upgrade_cmd("--log-format", "json", "daemon", "--config", str(n.config), "--once"),
                stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False, cwd=REPO,
                env={**clean_env(), "ZOS_UPGRADE_CRASH_AT": "after-stop"})
        assert crash.returncode < 0, n.log.read_text()[-2000:]
        assert json.loads((hub_root / STATE_FILE).read_text())["groups"] == {"workers": [n.name]}
        assert (n.state / "fleet-lock.json").exists()
        # the next start recovers the node (rolls the transaction back), gives the slot back, and
        # the round takes it again for its own transaction and gives it back after the commit
        assert n.start_once().wait(timeout=120) == 0, n.log.read_text()[-2000:]
        released = [e for e in n.events() if e.get("msg") == "FleetLock slot released"]
        assert len(released) >= 2
        assert json.loads((hub_root / STATE_FILE).read_text())["groups"] == {}
        assert not (n.state / "fleet-lock.json").exists()
        assert n.box.wait_version("alpha", "1.1.0") == "1.1.0"


def test_sigterm_ends_the_wait_for_a_slot_and_rolls_the_hooks_back() -> None:
    with fleet(1, "") as (hub, _hub_root, (n,)):
        n.write_config(hub, hub)
        n.release("1.0.0")
        assert n.start_once().wait(timeout=120) == 0, n.log.read_text()[-2000:]
        n.write_config(hub, f"http://127.0.0.1:{free_port()}")  # a lock server that never answers
        n.release("1.1.0")
        with open(n.log, "ab") as log:
            proc = subprocess.Popen(
                zos_upgrade_cmd("--log-format", "json", "daemon", "--config", str(n.config)),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO, env=clean_env())
        try:
            wait_for(lambda: any(e.get("msg") == "no FleetLock slot yet" for e in n.events()), timeout=60,
                     what="the wait for a slot")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, n.log.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                stop_process(proc)
        assert any("LockWaitAborted" in str(e.get("detail", "")) for e in n.events()), \
            n.log.read_text()[-2000:]
        assert n.box.version_file("alpha") == "1.0.0"
        assert not (n.state / "journal.json").exists()  # rolled back, nothing left to recover
