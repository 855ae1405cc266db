"""HubSource: a hub flist -> its resolved target downloaded into the downloads dir, checked by md5."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import httpx
import pytest

from zos_upgrade.hub import FlistInfo, HubAnswerInvalid, HubClient, RepoEntry
from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.net import Backoff, RetryPolicy
from zos_upgrade.sources import FetchFailed, HubSource, VerifiedRelease

FAST = RetryPolicy(attempts=2, backoff=Backoff(base=0.001, cap=0.001), deadline=5.0)
BYTES = b"the flist file of zos 1.1.0"
MD5 = hashlib.md5(BYTES).hexdigest()


def hub_serving(served: list[str], *, md5: str = MD5) -> HubClient:
    light = {"name": "zos:1.1.0.fl", "size": len(BYTES), "updated": 7, "type": "regular", "md5": md5}

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(request.url.path)
        if request.url.path == "/api/flist/tf-zos/zos:1.1.0.fl/light":
            return httpx.Response(200, stream=httpx.ByteStream(json.dumps(light).encode()),
                                  headers={"Content-Type": "application/json"})
        if request.url.path == "/tf-zos/zos:1.1.0.fl":
            return httpx.Response(200, stream=httpx.ByteStream(BYTES))
        return httpx.Response(404, stream=httpx.ByteStream(b"not found"))

    return HubClient("http://hub.test", transport=httpx.MockTransport(handler), retry=FAST)


def link() -> RepoFList:
    """``tf-zos/latest.fl``, a link to ``zos:1.1.0.fl``, as a repository listing names it."""
    return RepoFList("tf-zos", RepoEntry(name="latest.fl", size="1 KB", type="symlink", updated=9,
                                        target="zos:1.1.0.fl"))


def test_the_resolved_target_is_downloaded_never_the_link(tmp_path: Path) -> None:
    served: list[str] = []

    async def verify() -> VerifiedRelease:
        async with hub_serving(served) as hub:
            return await HubSource(hub, tmp_path / "flists").verify(link(), "boot")

    release = asyncio.run(verify())
    assert served == ["/api/flist/tf-zos/zos:1.1.0.fl/light", "/tf-zos/zos:1.1.0.fl"]
    assert release.flist == tmp_path / "flists" / MD5 and release.flist.read_bytes() == BYTES
    assert (release.target, release.fqdn, release.source, release.version, release.md5) == (
        "boot", "tf-zos/latest.fl", "tf-zos/zos:1.1.0.fl", "1.1.0", MD5)
    assert release.block_store == "http://hub.test/blocks" and release.verified_by == "hub md5"
    assert release.info["target"] == "zos:1.1.0.fl"


def test_a_bins_package_gets_a_size_even_from_a_listing(tmp_path: Path) -> None:
    flist = RepoFList("tf-zos", FlistInfo(name="zos:1.1.0.fl", size=len(BYTES), updated=7, type="regular",
                                          md5=MD5))

    async def verify() -> VerifiedRelease:
        async with hub_serving([]) as hub:
            return await HubSource(hub, tmp_path).verify(flist, "bin")

    release = asyncio.run(verify())
    assert release.target == "bin" and release.key == "tf-zos/zos:1.1.0.fl"
    assert release.info["size"] == len(BYTES)
    entry = RepoFList("tf-zos", RepoEntry(name="zos:1.1.0.fl", size="27 B", type="regular", updated=7))

    async def from_listing() -> VerifiedRelease:
        async with hub_serving([]) as hub:
            return await HubSource(hub, tmp_path).verify(entry, "bin")

    assert asyncio.run(from_listing()).info["size"] == 0


def test_bytes_that_never_match_the_hub_md5_are_rejected_with_the_cause(tmp_path: Path) -> None:
    async def verify() -> VerifiedRelease:
        async with hub_serving([], md5="0" * 32) as hub:
            return await HubSource(hub, tmp_path).verify(link(), "boot")

    with pytest.raises(FetchFailed, match="never matched the md5") as rejected:
        asyncio.run(verify())
    assert isinstance(rejected.value.__cause__, HubAnswerInvalid)
    assert "tf-zos/latest.fl" in str(rejected.value) and not any(tmp_path.iterdir())
