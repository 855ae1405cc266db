"""A TUF node (TrustedRepo, python-tuf) following our hub: the new flist arrives as a delta from the
flist it kept, checked by the signed length and hashes; a delta that rebuilds anything else is
refused and the signed file is downloaded whole."""

from __future__ import annotations

import hashlib
import logging
import struct
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.support.deltas import counting_proxy, flist_pair, forged_delta
from tests.support.hub import TOKEN_A, HubFactory
from zos_upgrade.cli import cli
from zos_upgrade.trust.client import TrustedRepo
from zos_upgrade.trust.fetcher import HttpxFetcher
from zos_upgrade.trust.layout import hub_metadata_url, hub_targets_url


def run(*args: str | Path) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_tuf_download_uses_a_checked_delta(tmp_path: Path, start_hub: HubFactory,
                                           caplog: pytest.LogCaptureFixture) -> None:
    old, new = flist_pair(tmp_path, ".flist")
    build = tmp_path / "build"
    build.mkdir()
    v1, v2 = build / "zos:1.0.0.flist", build / "zos:1.1.0.flist"
    v1.write_bytes(old.read_bytes())
    v2.write_bytes(new.read_bytes())
    repo = tmp_path / "tf"
    run("trust", "init", "--dir", repo)
    run("trust", "sign", "--dir", repo, v1, v2)
    pinned = tmp_path / "pinned.root.json"
    pinned.write_bytes((repo / "metadata" / "1.root.json").read_bytes())
    with start_hub() as hub:
        (hub.root / "alpha").mkdir()
        for f in (v1, v2):
            (hub.root / "alpha" / f.name).write_bytes(f.read_bytes())
        run("trust", "push", "--dir", repo, "--url", hub.url, "--repo", "alpha", "--token", TOKEN_A)
        logging.getLogger().addHandler(caplog.handler)  # the CLI's log set-up replaced the root's handlers
        with counting_proxy(int(hub.url.rsplit(":", 1)[1])) as proxy:
            fetcher = HttpxFetcher()
            node = TrustedRepo(tmp_path / "state" / "trust" / "alpha", hub_metadata_url(proxy.url, "alpha"),
                               hub_targets_url(proxy.url, "alpha"), pinned, fetcher, name="alpha")
            flists = tmp_path / "state" / "flists"
            try:
                node.refresh()
                path, md5 = node.download(node.target("zos:1.0.0.flist"), flists)
                assert path.read_bytes() == v1.read_bytes()
                with caplog.at_level(logging.INFO, "zos_upgrade.trust.client"):
                    before = proxy.bytes_down
                    path, md5 = node.download(node.target("zos:1.1.0.flist"), flists)
                    delta_bytes = proxy.bytes_down - before
                assert path.read_bytes() == v2.read_bytes()
                assert md5 == hashlib.md5(v2.read_bytes()).hexdigest()
                assert "flist rebuilt from delta" in caplog.messages
                assert delta_bytes < v2.stat().st_size / 2, (delta_bytes, v2.stat().st_size)

                # the hub's kept delta replaced by one that rebuilds other bytes: the signed hashes
                # refuse it, the whole signed file is downloaded instead
                path.unlink()
                kept = hub.root / ".delta" / f"{hashlib.md5(v1.read_bytes()).hexdigest()}-{md5}"
                assert kept.is_file()
                kept.write_bytes(forged_delta(v1.read_bytes(), b"C" + struct.pack(">QI", 0, 10)))
                caplog.clear()
                with caplog.at_level(logging.INFO, "zos_upgrade.trust.client"):
                    path, _ = node.download(node.target("zos:1.1.0.flist"), flists)
                assert path.read_bytes() == v2.read_bytes()
                assert "flist delta refused, downloading whole" in caplog.messages

                # no delta to offer (the node holds nothing the hub has): the same request answers
                # the whole target, checked and kept; a malformed delta-from is a 400
                path.unlink()
                (flists / hashlib.md5(v1.read_bytes()).hexdigest()).rename(flists / ("e" * 32))
                caplog.clear()
                with caplog.at_level(logging.INFO, "zos_upgrade.trust.client"):
                    path, _ = node.download(node.target("zos:1.1.0.flist"), flists)
                assert path.read_bytes() == v2.read_bytes()
                assert "flist downloaded whole, no delta" in caplog.messages
                sha = node.target("zos:1.1.0.flist").sha256
                target_url = f"{hub.url}/tuf/alpha/targets/{sha}.zos:1.1.0.flist"
                assert httpx.get(target_url, params={"delta-from": "nope"}).status_code == 400
            finally:
                fetcher.close()
