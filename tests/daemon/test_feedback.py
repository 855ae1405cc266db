"""Fleet feedback from the node's side against a real hub process: reports queued durably and sent,
kept while the hub is down and delivered once it is back, bounded, dropped when refused for good;
the halt flag read and a halted release reported as waiting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.support.hub import NODE_SECRET as SECRET
from tests.support.hub import TOKEN_A, HubFactory, make_golden_layout, start_hub
from tests.support.hub import rollout_config as config
from tests.support.procs import free_port
from zos_upgrade.daemon.feedback import FleetFeedback
from zos_upgrade.hub import HubClient
from zos_upgrade.hub.rollout import node_token
from zos_upgrade.net import Backoff, RetryPolicy
from zos_upgrade.node.reports import ReportQueue

FAST = RetryPolicy(attempts=1, backoff=Backoff(base=0.01, cap=0.01), deadline=5.0)
RELEASE = "golden/v2.flist"
__all__ = ["start_hub"]  # the fixture, used by name


def feedback(url: str, state: Path, node: str = "node-1", limit: int = 64) -> FleetFeedback[HubClient]:
    client = HubClient(url, token=node_token(SECRET, node), retry=FAST, timeout=5.0)
    return FleetFeedback(ReportQueue(state, limit), client, node, "workers", timeout=5.0)


def ended(fb: FleetFeedback[HubClient], result: str = "upgraded", release: str = RELEASE) -> None:
    fb.ended(release, version="2.0.0", version_before="1.0.0",
             version_after="2.0.0" if result == "upgraded" else "1.0.0",
             result=result, reason="" if result == "upgraded" else "hook migrate exited 2",  # type: ignore[arg-type]
             duration=3.5)


def test_reports_wait_for_a_hub_that_is_down_and_arrive_once_it_is_back(
        start_hub: HubFactory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    down = f"http://127.0.0.1:{free_port()}"

    async def while_down() -> None:
        fb = feedback(down, state)
        async with fb.hub:
            ended(fb, "rolled-back")
            assert await fb.flush() == 0  # refused connection: kept, nothing raised
            assert await fb.halted(RELEASE) is None  # a hub that cannot say is no halt
        assert len(fb.queue.pending()) == 1

    asyncio.run(while_down())
    root = make_golden_layout(tmp_path / "hub")
    with start_hub(root, config=config(threshold=90)) as hub:
        async def once_up() -> None:
            fb = feedback(hub.url, state)  # a new process: the queue is read back from the state dir
            async with fb.hub:
                ended(fb, "upgraded")
                assert await fb.flush() == 2
                assert fb.queue.pending() == []

        asyncio.run(once_up())
        status = httpx.get(f"{hub.url}/api/rollout/{RELEASE}").json()
        # one node, two reports in order: its latest (upgraded) is what counts
        assert status["counts"] == {"waiting": 0, "upgraded": 1, "failed": 0, "rolled-back": 0}


def test_the_queue_is_bounded_and_a_refused_report_does_not_block_it(
        start_hub: HubFactory, tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "hub")
    with start_hub(root, config=config(threshold=90)) as hub:
        async def run() -> None:
            fb = feedback(hub.url, tmp_path / "state", limit=3)
            async with fb.hub:
                ended(fb, "failed", release="golden/not-stored.flist")  # 404: never accepted
                for _ in range(4):
                    ended(fb, "failed")
                assert len(fb.queue.pending()) == 3  # the oldest (the 404 one among them) dropped
                (fb.queue.folder / "000000000099.json").write_bytes(b"garbage")
                ended(fb, "failed", release="golden/not-stored.flist")
                # kept: the newest three (a report, the garbage, the 404 one): the garbage is removed,
                # the 404 dropped, the report delivered, and nothing is left behind
                assert len(list(fb.queue.folder.iterdir())) == 3
                assert await fb.flush() == 1
                assert fb.queue.pending() == []

        asyncio.run(run())
        status = httpx.get(f"{hub.url}/api/rollout/{RELEASE}").json()
        assert status["counts"]["failed"] == 1
        assert status["reasons"] == [{"reason": "hook migrate exited 2", "nodes": 1}]


def test_a_halted_rollout_is_read_and_the_node_reports_waiting(start_hub: HubFactory, tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "hub")
    with start_hub(root, config=config()) as hub:
        reply = httpx.post(f"{hub.url}/api/rollout/{RELEASE}/halt", content=b'{"reason": "wait for 2.0.1"}',
                           headers={"Authorization": f"bearer {TOKEN_A}"})
        assert reply.status_code == 200

        async def run() -> None:
            fb = feedback(hub.url, tmp_path / "state")
            async with fb.hub:
                assert await fb.halted(RELEASE) == "wait for 2.0.1"
                fb.waiting(RELEASE, version="2.0.0", current="1.0.0", reason="rollout halted")
                fb.waiting(RELEASE, version="2.0.0", current="1.0.0", reason="rollout halted")
                assert len(fb.queue.pending()) == 1  # once per release
                assert await fb.flush() == 1

        asyncio.run(run())
        status = httpx.get(f"{hub.url}/api/rollout/{RELEASE}").json()
        assert status["counts"]["waiting"] == 1 and status["halted"]
