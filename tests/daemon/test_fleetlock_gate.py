"""The daemon's FleetLock gate against the real hub: it never proceeds without the slot (the server
down: it waits with backoff, and takes the slot once the server is back), keeps a durable record of
the held slot, gives it back (or keeps the record when the server cannot hear it), stops on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from tests.support.procs import REPO, free_port, serving, zos_upgrade_cmd
from zos_upgrade.daemon.fleetlock import HELD_FILE, FleetLockGate, LockWaitAborted
from zos_upgrade.hubserver.fleetlock import STATE_FILE
from zos_upgrade.rollout.fleetlock import FleetLockClient


def hub_cmd(root: Path, port: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    return zos_upgrade_cmd("hub", "serve", "--root", str(root), "--port", str(port))


def holders(root: Path) -> dict[str, list[str]]:
    path = root / STATE_FILE
    return dict(json.loads(path.read_text())["groups"]) if path.exists() else {}


def test_waits_while_the_server_is_down_then_takes_and_releases(tmp_path: Path) -> None:
    port, hub_root, state = free_port(), tmp_path / "hub", tmp_path / "state"
    state.mkdir()
    server = contextlib.ExitStack()
    naps: list[float] = []

    async def sleep(delay: float) -> None:
        naps.append(delay)
        assert (state / HELD_FILE).exists()  # recorded before the first ask: a crash still releases
        if len(naps) == 3:  # the lock server comes back after the third wait
            server.enter_context(serving(hub_cmd(hub_root, port), port, cwd=REPO))

    async def run() -> None:
        client = FleetLockClient(f"http://127.0.0.1:{port}", "node-a", "default")
        gate = FleetLockGate(client, state, node_id="node-a", group="default", sleep=sleep)
        waits: list[str | None] = []
        gate.on_wait = waits.append
        try:
            await gate.take()
            assert gate.attempts == 4 and len(naps) == 3
            assert naps[0] <= naps[1] * 2 and max(naps) <= 60  # backoff, bounded
            assert waits[0] is not None and "FleetLock" in waits[0] and waits[-1] is None
            assert json.loads((state / HELD_FILE).read_text())["id"] == "node-a"
            assert holders(hub_root) == {"default": ["node-a"]}
            await gate.release()
            assert not (state / HELD_FILE).exists() and holders(hub_root) == {}
        finally:
            await client.aclose()

    with server:
        asyncio.run(run())


def test_a_full_group_keeps_the_node_waiting_until_a_slot_frees(tmp_path: Path) -> None:
    port, hub_root = free_port(), tmp_path / "hub"

    async def run() -> None:
        other = FleetLockClient(f"http://127.0.0.1:{port}", "other", "default")
        mine = FleetLockClient(f"http://127.0.0.1:{port}", "mine", "default")
        naps = 0

        async def sleep(_delay: float) -> None:
            nonlocal naps
            naps += 1
            assert holders(hub_root) == {"default": ["other"]}
            if naps == 2:
                await other.steady_state()

        gate = FleetLockGate(mine, tmp_path, node_id="mine", group="default", sleep=sleep)
        try:
            await other.pre_reboot()
            await gate.take()
            assert naps == 2 and holders(hub_root) == {"default": ["mine"]}
        finally:
            await other.aclose()
            await mine.aclose()

    with serving(hub_cmd(hub_root, port), port, cwd=REPO):
        asyncio.run(run())


def test_a_release_the_server_misses_is_kept_and_settled_later(tmp_path: Path) -> None:
    port, hub_root, state = free_port(), tmp_path / "hub", tmp_path / "state"
    state.mkdir()

    async def take() -> None:
        client = FleetLockClient(f"http://127.0.0.1:{port}", "n", "default")
        try:
            await FleetLockGate(client, state, node_id="n", group="default").take()
        finally:
            await client.aclose()

    async def release_and_settle(expect_held: bool) -> None:
        client = FleetLockClient(f"http://127.0.0.1:{port}", "n", "default")
        gate = FleetLockGate(client, state, node_id="n", group="default")
        try:
            await gate.settle()
            assert gate.holds() is expect_held
        finally:
            await client.aclose()

    with serving(hub_cmd(hub_root, port), port, cwd=REPO):
        asyncio.run(take())
    asyncio.run(release_and_settle(expect_held=True))  # server down: the record stays
    with serving(hub_cmd(hub_root, port), port, cwd=REPO):
        assert holders(hub_root) == {"default": ["n"]}  # the hub kept the slot over its restart
        asyncio.run(release_and_settle(expect_held=False))
        assert holders(hub_root) == {}


def test_stop_ends_the_wait_without_a_slot(tmp_path: Path) -> None:
    port = free_port()  # nobody listens

    async def run() -> None:
        client = FleetLockClient(f"http://127.0.0.1:{port}", "n", "default")
        never = asyncio.Event()

        async def sleep(_delay: float) -> None:
            await never.wait()  # a wait that would last for ever

        gate = FleetLockGate(client, tmp_path, node_id="n", group="default", sleep=sleep)
        task = asyncio.ensure_future(gate.take())
        try:
            while gate.attempts == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            gate.stop()
            with pytest.raises(LockWaitAborted, match="stopping"):
                await asyncio.wait_for(task, 10)
            assert gate.holds()  # it may have been granted meanwhile: given back at the next settle
            await gate.settle()  # nobody listens: the record stays for the next round
            assert gate.holds()
        finally:
            await client.aclose()

    asyncio.run(run())
