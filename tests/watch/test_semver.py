"""FListSemverWatcher against a real hub server whose link moves during the test."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest

from tests.node.conftest import ONE_ATTEMPT, HubServer, RecordingTransport, Ticker, hub_process, wait_until
from tests.support.procs import free_port
from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.models import HubAnswerInvalid
from zos_upgrade.net import NetworkError
from zos_upgrade.node.events import FListEvent
from zos_upgrade.versions import InvalidVersion, Version
from zos_upgrade.watch import FListSemverWatcher

INTERVAL = 0.5


def seed(hub: HubServer, *versions: str, link: str) -> str:
    repo = hub.new_repo()
    for v in versions:
        hub.put(repo, f"zos:v{v}.flist")
    hub.link(repo, "latest.flist", f"zos:v{link}.flist")
    return repo


def versions_of(events: list[FListEvent]) -> list[str]:
    return [str(e.version()) for e in events]


def test_emits_once_per_newer_version_ignores_downgrades_and_same_version_changes(hub: HubServer) -> None:
    repo = seed(hub, "1.0.0", "1.1.0", "1.2.0", "0.9.0", link="1.1.0")

    async def body() -> None:
        ticker = Ticker()
        transport = RecordingTransport()
        client = hub.client(transport)
        watcher = FListSemverWatcher(f"{repo}/latest.flist", INTERVAL, Version(1, 0, 0), hub=client,
                                     sleep=ticker.sleep)
        events: list[FListEvent] = []

        async def consume() -> None:
            async for event in watcher.watch():
                events.append(event)
                watcher.confirm(event.version())  # the upgrade succeeded

        task = asyncio.create_task(consume())
        await wait_until(lambda: len(ticker.delays) == 1)
        assert versions_of(events) == ["1.1.0"]
        assert events[0].fqdn() == f"{repo}/latest.flist"
        assert events[0].absolute() == f"{repo}/zos:v1.1.0.flist"
        assert watcher.current == Version(1, 1, 0)
        await ticker.step(3)
        assert versions_of(events) == ["1.1.0"]  # confirmed: not proposed again
        hub.link(repo, "latest.flist", "zos:v0.9.0.flist")  # downgrade
        await ticker.step(2)
        hub.put(repo, "zos:v1.1.0.flist", b"same version, new content")
        hub.link(repo, "latest.flist", "zos:v1.1.0.flist")  # same version, new md5 and updated
        await ticker.step(2)
        assert versions_of(events) == ["1.1.0"]
        hub.link(repo, "latest.flist", "zos:v1.2.0.flist")
        await ticker.step(3)
        assert versions_of(events) == ["1.1.0", "1.2.0"]
        assert all(d == INTERVAL for d in ticker.delays)  # no jitter asked, nothing failed
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        lights = [(inm, status) for path, inm, status in transport.seen if path.endswith("/light")]
        assert lights[0] == (None, 200)
        assert any(inm is not None and status == 304 for inm, status in lights)  # conditional polling

    asyncio.run(body())


def test_unconfirmed_upgrade_is_proposed_again_after_backoff(hub: HubServer) -> None:
    repo = seed(hub, "2.0.0", link="2.0.0")

    async def body() -> None:
        ticker = Ticker()
        client = hub.client()
        watcher = FListSemverWatcher(f"{repo}/latest.flist", INTERVAL, Version(1, 0, 0), hub=client,
                                     sleep=ticker.sleep, rng=random.Random(1))
        events: list[FListEvent] = []

        async def consume() -> None:
            async for event in watcher.watch():
                events.append(event)
                if len(events) == 3:  # the first two upgrades failed; the third succeeds
                    watcher.confirm(event.version())

        task = asyncio.create_task(consume())
        await wait_until(lambda: len(ticker.delays) == 1)
        await ticker.step(4)
        assert versions_of(events) == ["2.0.0", "2.0.0", "2.0.0"]
        first, second, third = ticker.delays[:3]
        assert INTERVAL <= first <= 2 * INTERVAL and 2 * INTERVAL <= second <= 4 * INTERVAL  # backing off
        assert third == INTERVAL and ticker.delays[3] == INTERVAL  # confirmed: back to the interval
        assert watcher.current == Version(2, 0, 0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(body())


def test_lower_version_at_start_gives_nothing(hub: HubServer) -> None:
    repo = seed(hub, "1.0.0", link="1.0.0")

    async def body() -> None:
        ticker = Ticker()
        client = hub.client()
        watcher = FListSemverWatcher(f"{repo}/latest.flist", INTERVAL, Version(3, 0, 0), hub=client,
                                     sleep=ticker.sleep)
        events: list[FListEvent] = []
        task = asyncio.create_task(_collect(watcher, events))
        await wait_until(lambda: len(ticker.delays) == 1)
        await ticker.step(2)
        assert events == [] and watcher.current == Version(3, 0, 0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(body())


async def _collect(watcher: FListSemverWatcher, events: list[FListEvent]) -> None:
    async for event in watcher.watch():
        events.append(event)
        watcher.confirm(event.version())


def test_target_without_version(hub: HubServer, caplog: pytest.LogCaptureFixture) -> None:
    repo = hub.new_repo()
    hub.put(repo, "stable.flist")
    hub.put(repo, "zos:v1.5.0.flist")
    hub.link(repo, "latest.flist", "stable.flist")

    async def body() -> None:
        client = hub.client()
        watcher = FListSemverWatcher(f"{repo}/latest.flist", INTERVAL, Version(1, 0, 0), hub=client,
                                     sleep=Ticker().sleep)
        with pytest.raises(InvalidVersion, match=r"stable\.flist"):  # the first check raises
            await anext(watcher.watch())
        # after start: logged, backed off, and the watcher lives on
        hub.link(repo, "latest.flist", "zos:v1.5.0.flist")
        ticker = Ticker()
        watcher = FListSemverWatcher(f"{repo}/latest.flist", INTERVAL, Version(1, 5, 0), hub=client,
                                     sleep=ticker.sleep)
        events: list[FListEvent] = []
        task = asyncio.create_task(_collect(watcher, events))
        await wait_until(lambda: len(ticker.delays) == 1)
        hub.link(repo, "latest.flist", "stable.flist")
        with caplog.at_level(logging.WARNING, logger="zos_upgrade.watch"):
            await ticker.step(2)
        assert ticker.delays[2] > INTERVAL  # second failure in a row: backing off
        failures = [r for r in caplog.records if r.getMessage() == "check failed, backing off"]
        assert failures and "stable.flist" in failures[0].error  # type: ignore[attr-defined]
        hub.put(repo, "zos:v1.6.0.flist")
        hub.link(repo, "latest.flist", "zos:v1.6.0.flist")
        await ticker.step(1)
        assert versions_of(events) == ["1.6.0"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(body())


def test_survives_the_hub_going_away_and_coming_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "hub"
    root.mkdir()
    port = free_port()
    server = HubServer(f"http://127.0.0.1:{port}", root, port)
    repo = server.new_repo()
    server.put(repo, "zos:v1.0.0.flist")
    server.put(repo, "zos:v1.1.0.flist")
    server.link(repo, "latest.flist", "zos:v1.0.0.flist")

    async def body() -> None:
        ticker = Ticker()
        client = server.client()
        watcher = FListSemverWatcher(f"{repo}/latest.flist", INTERVAL, Version(1, 0, 0), hub=client,
                                     sleep=ticker.sleep, max_backoff=4 * INTERVAL)
        events: list[FListEvent] = []
        with hub_process(root, port):
            task = asyncio.create_task(_collect(watcher, events))
            await wait_until(lambda: len(ticker.delays) == 1)
        # the hub is gone
        with caplog.at_level(logging.WARNING, logger="zos_upgrade.watch"):
            await ticker.step(5)
        assert not task.done()
        gone = ticker.delays[2:6]
        assert all(d > INTERVAL for d in gone[1:]) and max(gone) <= 4 * INTERVAL  # capped backoff
        errors = [r for r in caplog.records if r.getMessage() == "check failed, backing off"]
        assert len(errors) == 5 and "NetworkError" in errors[0].error  # type: ignore[attr-defined]
        server.link(repo, "latest.flist", "zos:v1.1.0.flist")
        with hub_process(root, port):
            await ticker.step(1)
            assert versions_of(events) == ["1.1.0"]
            assert ticker.delays[-1] == INTERVAL  # healthy again
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(body())


def test_first_check_failure_raises_when_the_hub_is_down() -> None:
    port = free_port()
    server = HubServer(f"http://127.0.0.1:{port}", Path("/nonexistent"), port)

    async def body() -> None:
        client = server.client()
        watcher = FListSemverWatcher("zos/latest.flist", INTERVAL, Version(1, 0, 0), hub=client)
        with pytest.raises(NetworkError):
            await anext(watcher.watch())
        await client.aclose()

    asyncio.run(body())


def test_cancelling_the_consumer_ends_the_watch_without_leaking_tasks(hub: HubServer) -> None:
    repo = seed(hub, "1.0.0", link="1.0.0")

    async def body() -> None:
        client = hub.client()
        # real sleeps this time, short ones
        watcher = FListSemverWatcher(f"{repo}/latest.flist", 0.02, Version(1, 0, 0), hub=client, jitter=0.01)
        checks = 0
        original = watcher.check

        async def counting() -> FListEvent | None:
            nonlocal checks
            checks += 1
            return await original()

        watcher.check = counting  # type: ignore[method-assign]
        task = asyncio.create_task(_collect(watcher, []))
        await wait_until(lambda: checks >= 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert asyncio.all_tasks() == {asyncio.current_task()}
        settled = checks
        await asyncio.sleep(0.1)
        assert checks == settled  # nothing polls on behind our back
        await client.aclose()

    asyncio.run(body())


def test_jitter_spreads_the_polls(hub: HubServer) -> None:
    repo = seed(hub, "1.0.0", link="1.0.0")

    async def body() -> None:
        ticker = Ticker()
        client = hub.client()
        watcher = FListSemverWatcher(f"{repo}/latest.flist", INTERVAL, Version(1, 0, 0), hub=client,
                                     jitter=0.25, rng=random.Random(7), sleep=ticker.sleep)
        task = asyncio.create_task(_collect(watcher, []))
        await wait_until(lambda: len(ticker.delays) == 1)
        await ticker.step(5)
        assert all(INTERVAL <= d <= INTERVAL + 0.25 for d in ticker.delays)
        assert len(set(ticker.delays)) > 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(body())


def test_bad_answers_of_a_lying_hub(hostile: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    url, answers = hostile
    good = ('{"name": "latest.flist", "size": 1, "updated": 1, "type": "symlink", '
            '"md5": "0123456789abcdef0123456789abcdef", "target": "zos:v2.0.0.flist"}')
    light = answers / "zos--latest.flist.json"
    light.write_text(good.replace('"updated": 1', '"updated": "last tuesday"'))

    async def body() -> None:
        client = HubClient(url, retry=ONE_ATTEMPT, timeout=5.0)
        watcher = FListSemverWatcher("zos/latest.flist", INTERVAL, Version(1, 0, 0), hub=client)
        with pytest.raises(HubAnswerInvalid, match="updated"):
            await anext(watcher.watch())
        light.write_text(good)
        ticker = Ticker()
        watcher = FListSemverWatcher("zos/latest.flist", INTERVAL, Version(2, 0, 0), hub=client,
                                     sleep=ticker.sleep)
        events: list[FListEvent] = []
        task = asyncio.create_task(_collect(watcher, events))
        await wait_until(lambda: len(ticker.delays) == 1)
        light.write_text(good.replace('"updated": 1', '"updated": "last tuesday"'))
        with caplog.at_level(logging.WARNING, logger="zos_upgrade.watch"):
            await ticker.step(1)
        light.write_text("<html>oops</html>")
        with caplog.at_level(logging.WARNING, logger="zos_upgrade.watch"):
            await ticker.step(1)
        errors = [r.error for r in caplog.records if r.getMessage() == "check failed, backing off"]  # type: ignore[attr-defined]
        assert len(errors) == 2 and "updated" in errors[0] and "not valid JSON" in errors[1]
        light.write_text(good.replace("v2.0.0", "v2.1.0"))
        await ticker.step(1)
        assert versions_of(events) == ["2.1.0"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(body())
