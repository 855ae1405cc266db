"""PublisherSource: a signed release object -> its flist file, fetched, checked by the signed hash."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from tests.support.local_releases import packed
from zos_upgrade.net import NetworkError
from zos_upgrade.node.events import ReleaseEvent
from zos_upgrade.publisher.base import HashMismatch, Upgrade
from zos_upgrade.publisher.signing import file_hash
from zos_upgrade.sources import FetchFailed, PublisherSource, UnusableRelease, VerificationFailed
from zos_upgrade.sources.publisher import fqdn_of_url
from zos_upgrade.upgrade.flister import Flister
from zos_upgrade.versions import parse_version

URL = "http://h/tf-zos/a.fl"


def source_for(downloads: Path, files: dict[str, Path], fetched: list[str]) -> PublisherSource:
    async def fetch(url: str) -> bytes:
        fetched.append(url)
        return files[url].read_bytes()

    return PublisherSource(downloads, fetch_url=fetch)


def event(url: str, pinned: str, version: str = "1.1.0") -> ReleaseEvent:
    return ReleaseEvent(parse_version(version), Upgrade(flist=url, hash=pinned, version=version))


def test_hash_mismatch_refuses_before_writing_or_materializing(tmp_path: Path) -> None:
    flist, blocks = packed(tmp_path, "a.fl", {"etc/x": "x"})
    flister = Flister(tmp_path / "state", store_url=f"dir://{blocks}")
    source = source_for(flister.downloads_dir, {URL: flist}, [])
    with pytest.raises(VerificationFailed, match="the release object pins") as refused:
        asyncio.run(source.verify(event(URL, "00" * 32), "boot"))
    assert isinstance(refused.value.__cause__, HashMismatch)
    assert not flister.downloads_dir.exists() or not any(flister.downloads_dir.iterdir())
    assert not flister.mounts_dir.exists()
    good = asyncio.run(source.verify(event(URL, file_hash(flist)), "boot"))
    assert good.md5 == hashlib.md5(flist.read_bytes()).hexdigest()
    assert good.flist == flister.downloads_dir / good.md5
    assert good.flist.read_bytes() == flist.read_bytes()
    assert (asyncio.run(flister.mount(good)).path / "etc/x").read_text() == "x"


def test_the_verified_release_names_what_the_boot_files_record(tmp_path: Path) -> None:
    flist, _ = packed(tmp_path, "a.fl", {"etc/x": "x"})
    fetched: list[str] = []
    url = "https://cdn.example:8443/tf-zos/zos:1.1.0.fl"
    release = asyncio.run(source_for(tmp_path / "dl", {url: flist}, fetched).verify(
        event(url, file_hash(flist)), "boot"))
    assert fetched == [url]
    assert (release.target, release.fqdn, release.version, release.source) == (
        "boot", "tf-zos/zos:1.1.0.fl", "1.1.0", url)
    assert release.block_store == "https://cdn.example:8443/blocks"
    assert release.info["name"] == "zos:1.1.0.fl" and release.info["type"] == "regular"


def test_a_release_without_a_pinned_hash_is_refused_before_any_fetch(tmp_path: Path) -> None:
    fetched: list[str] = []
    with pytest.raises(UnusableRelease, match="pins no flist hash"):
        asyncio.run(source_for(tmp_path, {}, fetched).verify(event(URL, ""), "boot"))
    assert fetched == []


def test_a_fetch_failure_is_a_rejection_that_keeps_its_cause(tmp_path: Path) -> None:
    async def down(url: str) -> bytes:
        raise NetworkError(f"GET {url}: failed after 2 attempts: refused", url=url)

    with pytest.raises(FetchFailed, match="failed after 2 attempts") as refused:
        asyncio.run(PublisherSource(tmp_path, fetch_url=down).verify(event(URL, "ab" * 32), "boot"))
    assert isinstance(refused.value.__cause__, NetworkError)


@pytest.mark.parametrize(("url", "fqdn"), [
    ("http://h/tf-zos/zos:1.1.0.fl", "tf-zos/zos:1.1.0.fl"),
    ("http://h/zos:1.1.0.fl", "releases/zos:1.1.0.fl"),
    ("http://h/a/b/../tf-zos/x.fl", "tf-zos/x.fl"),
])
def test_fqdn_of_url(url: str, fqdn: str) -> None:
    assert fqdn_of_url(url) == fqdn


def test_a_url_without_an_flist_name_is_unusable() -> None:
    with pytest.raises(UnusableRelease, match="does not end in a usable flist name"):
        fqdn_of_url("http://h/")
