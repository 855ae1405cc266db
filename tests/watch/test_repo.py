"""FListRepoWatcher against a real hub server: adds, updates, deletes (with the real entries)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from tests.node.conftest import ONE_ATTEMPT, HubServer, Ticker, wait_until
from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.hub.models import FlistInfo, HubAnswerInvalid
from zos_upgrade.net import ResponseTooLarge
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.events import EventType, RepoEvent
from zos_upgrade.watch import FListRepoWatcher

INTERVAL = 0.5


def names(flists: list[RepoFList]) -> list[str]:
    return [f.name for f in flists]


def test_diff_reports_adds_updates_and_real_deletions(hub: HubServer, tmp_path: Path) -> None:
    repo = hub.new_repo()
    hub.put(repo, "same:1.0.flist")
    hub.put(repo, "changed:1.0.flist")
    hub.put(repo, "new:1.0.flist")
    hub.put(repo, "zinit:0.2.14.flist")
    hub.link(repo, "zinit.flist", "zinit:0.2.14.flist")
    os.mkdir(hub.root / repo / ".tag-v1")  # a tag is not a package

    async def body() -> None:
        client = hub.client()
        listing = {e.name: e for e in await client.list(repo)}
        # what the node has: the bootstrap's bins.info, read back through Boot
        node = Boot(tmp_path)
        gone = FlistInfo(name="gone:0.1.flist", size=0, updated=5, type="regular", md5="a" * 32)
        other_repo = FlistInfo(name="keep.flist", size=0, updated=5, type="regular", md5="b" * 32)
        node.set_bins({
            f"{repo}/same:1.0.flist": RepoFList(repo, listing["same:1.0.flist"]),
            f"{repo}/changed:1.0.flist": RepoFList(repo, listing["changed:1.0.flist"]),
            f"{repo}/zinit.flist": RepoFList(repo, listing["zinit.flist"]),
            f"{repo}/gone:0.1.flist": gone,
            "elsewhere/keep.flist": other_repo,
        })
        st = (hub.root / repo / "changed:1.0.flist").stat()
        os.utime(hub.root / repo / "changed:1.0.flist", (st.st_atime, st.st_mtime + 60))
        watcher = FListRepoWatcher(repo, node.current_bins(), INTERVAL, hub=client)
        everything, to_add, to_del = await watcher.diff()
        assert sorted(everything) == sorted(f"{repo}/{n}" for n in
                                            ("same:1.0.flist", "changed:1.0.flist", "new:1.0.flist",
                                             "zinit:0.2.14.flist", "zinit.flist"))
        assert names(to_add) == ["changed:1.0.flist", "new:1.0.flist", "zinit:0.2.14.flist"]
        # the original's bug: to_del held zero values. Ours holds what the node has installed.
        assert len(to_del) == 1
        assert to_del[0].fqdn() == f"{repo}/gone:0.1.flist"
        assert to_del[0].info.updated == 5 and to_del[0].info.md5 == "a" * 32
        await client.aclose()

    asyncio.run(body())


def test_watch_emits_changes_and_respects_confirmation(hub: HubServer) -> None:
    repo = hub.new_repo()
    hub.put(repo, "a:1.0.flist")
    hub.put(repo, "b:1.0.flist")
    hub.put(repo, "b:1.1.flist")
    hub.link(repo, "b.flist", "b:1.0.flist")

    async def body() -> None:
        ticker = Ticker()
        client = hub.client()
        watcher = FListRepoWatcher(repo, {}, INTERVAL, hub=client, sleep=ticker.sleep)
        events: list[RepoEvent] = []
        confirm = [True]

        async def consume() -> None:
            async for event in watcher.watch():
                events.append(event)
                if confirm[0]:
                    watcher.confirm()

        task = asyncio.create_task(consume())
        await wait_until(lambda: len(ticker.delays) == 1)
        assert len(events) == 1 and events[0].event_type is EventType.REPO
        assert names(events[0].to_add) == ["a:1.0.flist", "b.flist", "b:1.0.flist", "b:1.1.flist"]
        assert events[0].to_del == [] and sorted(watcher.current) == sorted(events[0].all)
        await ticker.step(2)
        assert len(events) == 1  # nothing changed, everything confirmed
        hub.put(repo, "c:1.0.flist")
        hub.link(repo, "b.flist", "b:1.1.flist")  # retargeted link: an update
        hub.remove(repo, "a:1.0.flist")
        await ticker.step(1)
        assert len(events) == 2
        assert names(events[1].to_add) == ["b.flist", "c:1.0.flist"]
        assert names(events[1].to_del) == ["a:1.0.flist"] and events[1].to_del[0].info.type == "regular"
        assert events[1].to_add[0].absolute() == f"{repo}/b:1.1.flist"
        # an update the consumer fails to apply is proposed again, after a backoff
        confirm[0] = False
        hub.put(repo, "c:1.0.flist", b"rebuilt")
        st = (hub.root / repo / "c:1.0.flist").stat()
        os.utime(hub.root / repo / "c:1.0.flist", (st.st_atime, st.st_mtime + 60))
        await ticker.step(2)
        assert [names(e.to_add) for e in events[2:]] == [["c:1.0.flist"], ["c:1.0.flist"]]
        assert ticker.delays[-1] > INTERVAL
        confirm[0] = True
        await ticker.step(2)
        assert len(events) == 5 and ticker.delays[-1] == INTERVAL
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(body())


def test_partial_confirmation_proposes_the_rest_again(hub: HubServer) -> None:
    repo = hub.new_repo()
    hub.put(repo, "ok:1.0.flist")
    hub.put(repo, "broken:1.0.flist")

    async def body() -> None:
        ticker = Ticker()
        client = hub.client()
        watcher = FListRepoWatcher(repo, {}, INTERVAL, hub=client, sleep=ticker.sleep)
        events: list[RepoEvent] = []

        async def consume() -> None:
            async for event in watcher.watch():
                events.append(event)
                installed = {k: v for k, v in event.all.items() if "broken" not in k}
                watcher.confirm(installed)

        task = asyncio.create_task(consume())
        await wait_until(lambda: len(ticker.delays) == 1)
        await ticker.step(1)
        proposed = [names(e.to_add) for e in events]
        assert proposed == [["broken:1.0.flist", "ok:1.0.flist"], ["broken:1.0.flist"]]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(body())


def _listing(*items: str) -> str:
    return "[" + ",".join(items) + "]"


ENTRY = '{"name": "%s", "size": "1.00 KB", "updated": %s, "type": "regular"}'


@pytest.mark.parametrize(
    ("answer", "error", "why"),
    [
        (_listing(ENTRY % ("a.flist", 1), ENTRY % ("a.flist", 2)), HubAnswerInvalid, "twice"),
        (_listing(ENTRY % ("a.flist", '"2020-01-01"')), HubAnswerInvalid, "updated"),
        (_listing(ENTRY % ("a.flist", "1.5")), HubAnswerInvalid, "updated"),
        ('{"not": "a list"}', HubAnswerInvalid, "unexpected answer shape"),
        ("\x00\x01\x02", HubAnswerInvalid, "not valid JSON"),
    ],
)
def test_bad_listings_raise_at_start(hostile: tuple[str, Path], answer: str, error: type[Exception],
                                     why: str) -> None:
    url, answers = hostile
    (answers / "bins.json").write_text(answer)

    async def body() -> None:
        client = HubClient(url, retry=ONE_ATTEMPT, timeout=5.0)
        watcher = FListRepoWatcher("bins", {}, INTERVAL, hub=client)
        with pytest.raises(error, match=why):
            await anext(watcher.watch())
        await client.aclose()

    asyncio.run(body())


def test_a_50mb_listing_is_refused_at_the_size_limit(hostile: tuple[str, Path]) -> None:
    url, _ = hostile

    async def body() -> None:
        client = HubClient(url, retry=ONE_ATTEMPT, timeout=10.0)
        watcher = FListRepoWatcher("huge", {}, INTERVAL, hub=client)
        with pytest.raises(ResponseTooLarge, match="larger than"):
            await watcher.diff()
        await client.aclose()

    asyncio.run(body())


def test_bad_listings_after_start_are_logged_not_fatal(
    hostile: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, answers = hostile
    listing = answers / "bins.json"
    listing.write_text(_listing(ENTRY % ("a.flist", 1)))

    async def body() -> None:
        ticker = Ticker()
        client = HubClient(url, retry=ONE_ATTEMPT, timeout=5.0)
        watcher = FListRepoWatcher("bins", {}, INTERVAL, hub=client, sleep=ticker.sleep)
        events: list[RepoEvent] = []

        async def consume() -> None:
            async for event in watcher.watch():
                events.append(event)
                watcher.confirm()

        task = asyncio.create_task(consume())
        await wait_until(lambda: len(ticker.delays) == 1)
        with caplog.at_level(logging.WARNING, logger="zos_upgrade.watch"):
            listing.write_text(_listing(ENTRY % ("a.flist", 1), ENTRY % ("a.flist", 1)))
            await ticker.step(1)
            listing.write_text(_listing(ENTRY % ("a.flist", '"soon"')))
            await ticker.step(1)
        errors = [r.error for r in caplog.records if r.getMessage() == "check failed, backing off"]  # type: ignore[attr-defined]
        assert len(errors) == 2 and "twice" in errors[0] and "updated" in errors[1]
        assert ticker.delays[1] > INTERVAL and ticker.delays[2] > ticker.delays[1] / 2
        listing.write_text(_listing(ENTRY % ("a.flist", 1), ENTRY % ("b.flist", 1)))
        await ticker.step(1)
        assert len(events) == 2 and names(events[1].to_add) == ["b.flist"]
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(body())
