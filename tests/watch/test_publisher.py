"""PublisherWatcher against a real release server (``zos-upgrade release serve``) with signed releases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.node.conftest import ONE_ATTEMPT, Ticker, wait_until
from tests.support.procs import free_port, serving, zos_upgrade_cmd
from zos_upgrade.fsutil import atomic_write_json
from zos_upgrade.node.events import EventType, ReleaseEvent
from zos_upgrade.publisher.base import UnknownKey
from zos_upgrade.publisher.http import HTTPPublisher
from zos_upgrade.publisher.signing import generate_key
from zos_upgrade.publisher.tree import ReleaseTree
from zos_upgrade.versions import Version
from zos_upgrade.watch import PublisherWatcher

INTERVAL = 0.5


class Releases:
    def __init__(self, root: Path, key: Ed25519PrivateKey) -> None:
        self.root = root
        self.key = key
        self.tree = ReleaseTree(root / "tree")

    def add(self, version: str, key: Ed25519PrivateKey | None = None) -> None:
        flist = self.root / f"app-{version}.fl"
        flist.write_bytes(f"release {version}".encode())
        self.tree.add(version, flist_url=f"http://127.0.0.1:1/app-{version}.fl", flist_file=flist,
                      key=key or self.key)


@pytest.fixture
def releases(tmp_path: Path) -> Iterator[tuple[Releases, str]]:
    rel = Releases(tmp_path, generate_key())
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        rel.add(version)
    port = free_port()
    cmd = zos_upgrade_cmd("release", "serve", "--root", str(rel.tree.root), "--port", str(port))
    with serving(cmd, port):
        yield rel, f"http://127.0.0.1:{port}"


def test_offers_versions_in_order_one_at_a_time(releases: tuple[Releases, str]) -> None:
    rel, url = releases

    async def body() -> None:
        ticker = Ticker()
        publisher = HTTPPublisher(url, [rel.key.public_key()], retry=ONE_ATTEMPT)
        watcher = PublisherWatcher(publisher, Version(1, 0, 0), INTERVAL, sleep=ticker.sleep)
        events: list[ReleaseEvent] = []

        async def consume() -> None:
            async for event in watcher.watch():
                events.append(event)
                watcher.confirm(event.version)

        task = asyncio.create_task(consume())
        await wait_until(lambda: len(ticker.delays) == 1)
        assert events[0].event_type is EventType.RELEASE
        assert events[0].version == Version(1, 1, 0)
        assert list(events[0].pending) == [Version(1, 1, 0), Version(1, 2, 0)]
        assert events[0].upgrade.flist.endswith("app-1.1.0.fl") and events[0].upgrade.signature
        await ticker.step(1)
        assert [str(e.version) for e in events] == ["1.1.0", "1.2.0"]
        await ticker.step(2)
        assert len(events) == 2
        rel.add("1.3.0")
        await ticker.step(1)
        assert [str(e.version) for e in events] == ["1.1.0", "1.2.0", "1.3.0"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.aclose()

    asyncio.run(body())


def test_jump_to_latest_and_staged_versions(releases: tuple[Releases, str]) -> None:
    rel, url = releases

    async def body() -> None:
        publisher = HTTPPublisher(url, [rel.key.public_key()], retry=ONE_ATTEMPT)
        jumping = PublisherWatcher(publisher, Version(1, 0, 0), INTERVAL, jump_to_latest=True)
        event = await anext(jumping.watch())
        assert event.version == Version(1, 2, 0) and list(event.pending) == [Version(1, 2, 0)]
        # 1.2.0 is listed but latest still says 1.1.0: staged, not offered
        atomic_write_json(rel.tree.root / "latest", "1.1.0")
        stepping = PublisherWatcher(publisher, Version(1, 0, 0), INTERVAL)
        event = await anext(stepping.watch())
        assert list(event.pending) == [Version(1, 1, 0)]
        up_to_date = PublisherWatcher(publisher, Version(1, 1, 0), INTERVAL, sleep=Ticker().sleep)
        assert await up_to_date.check() is None
        await publisher.aclose()

    asyncio.run(body())


def test_release_signed_by_an_unknown_key_is_never_offered(releases: tuple[Releases, str]) -> None:
    rel, url = releases
    rel.add("2.0.0", key=generate_key())

    async def body() -> None:
        publisher = HTTPPublisher(url, [rel.key.public_key()], retry=ONE_ATTEMPT)
        watcher = PublisherWatcher(publisher, Version(1, 2, 0), INTERVAL)
        with pytest.raises(UnknownKey):
            await anext(watcher.watch())
        await publisher.aclose()

    asyncio.run(body())
