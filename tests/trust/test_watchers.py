"""The TUF watchers and sources of the node (watch/tuf.py, sources/tuf.py) against a real TUF
repository on loopback: what they propose comes from signed targets only; what they hand over is
downloaded and checked through TUF."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.tuf_repo import TufTestRepo
from tests.trust.conftest import REPO, Proxy
from zos_upgrade.node.events import ReleaseEvent
from zos_upgrade.sources.base import VerificationFailed
from zos_upgrade.sources.tuf import TufHubSource, TufReleaseSource
from zos_upgrade.trust.client import TrustedRepo
from zos_upgrade.trust.errors import TargetMismatch, UnknownTarget
from zos_upgrade.versions import Version
from zos_upgrade.watch import PublisherWatcher
from zos_upgrade.watch.tuf import TufLinkWatcher, TufPublisher, TufRepoWatcher

MakeClient = Callable[..., TrustedRepo]
A, B, C = b"a" * 3000, b"b" * 4000, b"c" * 5000


def test_link_watcher_proposes_the_signed_release(tuf_repo: TufTestRepo, make_client: MakeClient,
                                                  tmp_path: Path) -> None:
    tuf_repo.add_flist("zos:1.0.0.flist", A)
    tuf_repo.add_flist("zos:1.1.0.flist", B)
    tuf_repo.link("zos:production.flist", "zos:1.1.0.flist")
    tuf_repo.publish()
    trusted = make_client()
    watcher = TufLinkWatcher(f"{REPO}/zos:production.flist", 60, Version(1, 0, 0), trusted=trusted)
    event = asyncio.run(watcher.check())
    assert event is not None and event.version() == Version(1, 1, 0)
    assert event.absolute() == f"{REPO}/zos:1.1.0.flist"
    assert event.info.md5 == hashlib.md5(B).hexdigest() and event.info.size == len(B)
    source = TufHubSource(trusted, REPO, tmp_path / "downloads", hub_url="http://hub.invalid")
    release = asyncio.run(source.verify(event, "boot"))
    assert release.flist.read_bytes() == B and release.md5 == hashlib.md5(B).hexdigest()
    assert release.verified_by == "TUF (root v1, targets v2, snapshot v2, timestamp v2)"
    assert release.version == "1.1.0" and release.fqdn == f"{REPO}/zos:production.flist"
    # signed, but below the node's version: never proposed
    tuf_repo.link("zos:production.flist", "zos:1.0.0.flist")
    tuf_repo.publish()
    watcher.confirm(Version(1, 1, 0))
    assert asyncio.run(watcher.check()) is None and watcher.seen == Version(1, 0, 0)


def test_link_watcher_refuses_an_unsigned_link(tuf_repo: TufTestRepo, make_client: MakeClient) -> None:
    tuf_repo.add_flist("zos:1.0.0.flist", A)
    tuf_repo.publish()
    watcher = TufLinkWatcher(f"{REPO}/zos:production.flist", 60, Version(0, 0, 0), trusted=make_client())
    with pytest.raises(UnknownTarget, match=r"zos:production\.flist"):
        asyncio.run(watcher.check())


def test_source_refuses_forged_bytes(tuf_repo: TufTestRepo, make_client: MakeClient, proxy: Proxy,
                                     tmp_path: Path) -> None:
    info = tuf_repo.add_flist("zos:1.0.0.flist", A)
    tuf_repo.link("zos:production.flist", "zos:1.0.0.flist")
    tuf_repo.publish()
    trusted = make_client()
    event = asyncio.run(TufLinkWatcher(f"{REPO}/zos:production.flist", 60, Version(0, 0, 0),
                                       trusted=trusted).check())
    assert event is not None
    forged = tmp_path / "forged"
    forged.write_bytes(b"x" * len(A))
    proxy.forge(f"{proxy.prefix}/targets/{info.hashes['sha256']}.zos:1.0.0.flist", {"file": str(forged)})
    source = TufHubSource(trusted, REPO, tmp_path / "downloads", hub_url="http://hub.invalid")
    with pytest.raises(VerificationFailed, match=r"TargetMismatch \(target mismatch") as caught:
        asyncio.run(source.verify(event, "boot"))
    assert isinstance(caught.value.__cause__, TargetMismatch)
    assert not (tmp_path / "downloads").exists() or list((tmp_path / "downloads").iterdir()) == []


def test_repo_watcher_lists_signed_packages(tuf_repo: TufTestRepo, make_client: MakeClient) -> None:
    tuf_repo.add_flist("tool.flist", A)
    tuf_repo.add_flist("other:1.0.0.flist", B)
    tuf_repo.link("other:latest.flist", "other:1.0.0.flist")  # a link is not a package
    tuf_repo.publish()
    watcher = TufRepoWatcher(REPO, {}, 60, trusted=make_client())
    event = asyncio.run(watcher.check())
    assert event is not None
    assert [f.fqdn() for f in event.to_add] == [f"{REPO}/other:1.0.0.flist", f"{REPO}/tool.flist"]
    watcher.confirm()
    assert asyncio.run(watcher.check()) is None
    tuf_repo.add_flist("tool.flist", C)  # re-signed with new bytes: a changed package
    del tuf_repo.targets.targets["other:latest.flist"]
    del tuf_repo.targets.targets["other:1.0.0.flist"]
    tuf_repo.publish()
    event = asyncio.run(watcher.check())
    assert event is not None
    assert [f.fqdn() for f in event.to_add] == [f"{REPO}/tool.flist"]
    assert [f.fqdn() for f in event.to_del] == [f"{REPO}/other:1.0.0.flist"]


def test_publisher_mode_versions_latest_and_release(tuf_repo: TufTestRepo, make_client: MakeClient,
                                                    proxy: Proxy, tmp_path: Path) -> None:
    flists = tuf_repo.base / "flists"
    flists.mkdir()
    for version, data in (("1.0.0", A), ("1.1.0", B), ("1.2.0", C)):
        (flists / f"zos:{version}.fl").write_bytes(data)
        tuf_repo.add_release(version, data, f"{proxy.url}{proxy.prefix}/flists/zos:{version}.fl")
    tuf_repo.link("latest", "1.1.0")  # 1.2.0 is signed but not released yet: staged
    tuf_repo.publish()
    trusted = make_client()
    publisher = TufPublisher(trusted)
    watcher = PublisherWatcher(publisher, Version(1, 0, 0), 60)
    event = asyncio.run(watcher.check())
    assert event is not None and event.version == Version(1, 1, 0)
    assert list(event.pending) == [Version(1, 1, 0)]
    assert event.upgrade.flist.endswith("/flists/zos:1.1.0.fl")
    source = TufReleaseSource(trusted, tmp_path / "downloads")
    release = asyncio.run(source.verify(event, "boot"))
    assert release.flist.read_bytes() == B and release.fqdn == "flists/zos:1.1.0.fl"
    # the file at the signed URL changed: refused by the signed hashes
    (flists / "zos:1.1.0.fl").write_bytes(C[: len(B)])
    with pytest.raises(VerificationFailed, match="TargetMismatch"):
        asyncio.run(source.verify(ReleaseEvent(Version(1, 1, 0), event.upgrade), "boot"))
