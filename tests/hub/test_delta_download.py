"""HubClient.download through a counting proxy in front of our hub: a node holding the installed
flist receives a delta, not the whole new file; every bad delta falls back to the whole download
with a log line, and the file kept is always the one with the announced md5."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.deltas import CountingProxy, counting_proxy, flist_pair, forged_delta, store_release_pair
from tests.support.hub import Hub, HubFactory
from zos_upgrade.hub.client import HubClient

FQDN = "alpha/zos:latest.fl"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Setup:
    hub: Hub
    proxy: CountingProxy
    old: bytes
    new: bytes
    node: Path  # the node's <state>/flists

    def download(self, **client: int) -> tuple[Path, int]:
        async def run() -> Path:
            async with HubClient(self.proxy.url, **client) as hub:
                return await hub.download(FQDN, self.node)

        before = self.proxy.bytes_down
        path = asyncio.run(run())
        return path, self.proxy.bytes_down - before

    def kept_delta(self) -> Path:
        return self.hub.root / ".delta" / f"{md5(self.old)}-{md5(self.new)}"


@pytest.fixture
def setup(tmp_path: Path, start_hub: HubFactory) -> Iterator[Setup]:
    old, new = flist_pair(tmp_path, ".fl")
    with start_hub() as hub:
        store_release_pair(hub.root, old, new)
        port = int(hub.url.rsplit(":", 1)[1])
        with counting_proxy(port) as proxy:
            node = tmp_path / "state" / "flists"
            node.mkdir(parents=True)
            yield Setup(hub, proxy, old.read_bytes(), new.read_bytes(), node)


def install_base(setup: Setup, data: bytes | None = None) -> None:
    (setup.node / md5(setup.old)).write_bytes(setup.old if data is None else data)


def test_a_node_with_the_installed_flist_gets_a_delta(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    whole_path, whole_bytes = setup.download()  # no base yet: the whole file
    assert whole_path.read_bytes() == setup.new
    assert whole_bytes > len(setup.new)
    whole_path.unlink()
    install_base(setup)
    with caplog.at_level(logging.INFO, "zos_upgrade.hub.client"):
        path, delta_bytes = setup.download()
    assert path == setup.node / md5(setup.new) and path.read_bytes() == setup.new
    assert "flist rebuilt from delta" in caplog.messages
    assert delta_bytes < whole_bytes / 3, (delta_bytes, whole_bytes)


@pytest.mark.parametrize("bad", ["garbage", "out of bounds", "oversized", "wrong target"])
def test_a_bad_delta_falls_back_to_the_whole_file(setup: Setup, bad: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    install_base(setup)
    setup.download()  # the hub makes and keeps the delta; then it is replaced by a hostile one
    (setup.node / md5(setup.new)).unlink()
    deltas = {
        "garbage": b"not a delta at all",
        "out of bounds": forged_delta(setup.old, b"C" + struct.pack(">QI", len(setup.old) - 4, 10)),
        "oversized": forged_delta(setup.old, b"", target_size=10**9, payload_size=10**9),
        # a valid delta that rebuilds other bytes than the announced md5's
        "wrong target": forged_delta(setup.old, b"C" + struct.pack(">QI", 0, 10)),
    }
    setup.kept_delta().write_bytes(deltas[bad])
    with caplog.at_level(logging.INFO, "zos_upgrade.hub.client"):
        path, _ = setup.download(max_flist_bytes=1_000_000)
    assert path.read_bytes() == setup.new
    assert "flist delta refused, downloading whole" in caplog.messages
    assert "flist downloaded" in caplog.messages


def test_a_corrupt_base_or_none_falls_back(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    install_base(setup, b"bit rot" + setup.old[7:])  # named by the old md5, other bytes
    with caplog.at_level(logging.INFO, "zos_upgrade.hub.client"):
        path, _ = setup.download()
    assert path.read_bytes() == setup.new
    assert "flist delta refused, downloading whole" in caplog.messages
    # a base the hub does not hold: 404, the whole file, nothing made under the hub root
    path.unlink()
    for name in list(setup.node.iterdir()):
        name.unlink()
    (setup.node / ("e" * 32)).write_bytes(b"an flist the hub never had")
    caplog.clear()
    with caplog.at_level(logging.INFO, "zos_upgrade.hub.client"):
        path, _ = setup.download()
    assert path.read_bytes() == setup.new
    assert "no flist delta offered, downloading whole" in caplog.messages
