"""The client against the answers the real 0-hub gave (replayed: that hub cannot run here)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.support.hub import RECORDED, RECORDED_ROUTES
from zos_upgrade.hub import FlistContents, FlistInfo, HubAnswerInvalid, HubClient, NotFound, RepoEntry
from zos_upgrade.net import Backoff, RetryPolicy

FAST = RetryPolicy(attempts=2, backoff=Backoff(base=0.001, cap=0.001), deadline=5.0)


def replay(request: httpx.Request) -> httpx.Response:
    name, status, kind = RECORDED_ROUTES[request.url.path]
    return httpx.Response(
        status, stream=httpx.ByteStream((RECORDED / name).read_bytes()), headers={"Content-Type": kind}
    )


def client(handler=replay) -> HubClient:  # type: ignore[no-untyped-def]
    return HubClient("http://hub.test", transport=httpx.MockTransport(handler), retry=FAST)


def recorded(name: str) -> object:
    return json.loads((RECORDED / name).read_text())


def test_info_decodes_every_recorded_light_answer() -> None:
    async def run() -> None:
        async with client() as hub:
            v1 = await hub.info("golden/v1.flist")
            assert v1 == FlistInfo(
                "v1.flist", 2418, 1700000100, "regular", "a4ad99e67d299e389e36525e88c35984"
            )
            link = await hub.info("golden/app:latest.flist")
            assert (link.type, link.target, link.linktime, link.size) == (
                "symlink",
                "v2.flist",
                1700000300,
                2631,
            )
            assert (await hub.info("golden/v2")).name == "v2.flist"
            assert (await hub.info("golden/v2.flist")).md5 == "f126c0fce30da760a11354d661d0f159"

    asyncio.run(run())


def test_list_files_and_repositories_decode() -> None:
    async def run() -> None:
        async with client() as hub:
            entries = await hub.list("golden")
            assert [e.name for e in entries] == ["app:latest.flist", "v1.flist", "v2.flist"]
            assert entries[0] == RepoEntry(
                "app:latest.flist", "2.57 KB", 1700000200, "symlink", "v2.flist", 1700000300
            )
            for fqdn, expect in (
                ("golden/v1.flist", 10),
                ("golden/v2.flist", 11),
                ("golden/app:latest.flist", 11),
            ):
                tree = await hub.files(fqdn)
                assert isinstance(tree, FlistContents) and tree.regular == expect
                assert tree.content[0].path == "/bin" and tree.content[0].size == 4096
            (repo,) = await hub.repositories()
            assert (repo.name, repo.official, repo.updated) == ("golden", False, 1700000400)

    asyncio.run(run())


@pytest.mark.parametrize(
    "fqdn", ["golden/missing.flist", "nouser/v1.flist"], ids=["missing-flist", "missing-repo"]
)
def test_recorded_404s_raise_not_found_with_the_hub_message(fqdn: str) -> None:
    async def run() -> None:
        async with client() as hub:
            with pytest.raises(NotFound, match="not found"):
                await hub.info(fqdn)

    asyncio.run(run())


def test_unknown_repo_html_404_is_not_found() -> None:
    async def run() -> None:
        async with client() as hub:
            with pytest.raises(NotFound, match="404"):
                await hub.list("nouser")

    asyncio.run(run())


def _serve(body: bytes, kind: str = "application/json", status: int = 200):  # type: ignore[no-untyped-def]
    return lambda request: httpx.Response(
        status, stream=httpx.ByteStream(body), headers={"Content-Type": kind}
    )


@pytest.mark.parametrize(
    ("body", "kind", "match"),
    [
        (b"<html><body>maintenance</body></html>", "text/html", r"not valid JSON \(text/html"),
        (
            (RECORDED / "flist-golden-v1.flist-light.json").read_bytes()[:60],
            "application/json",
            "not valid JSON",
        ),
        (b'{"name": "v1.flist", "size": 1, "updated": 2, "type": "regular"}', "application/json", "md5"),
        (
            b'{"name": "v1.flist", "size": "1", "updated": 2, "type": "regular", "md5": "'
            + b"0" * 32
            + b'"}',
            "application/json",
            r"\$\.size",
        ),
        (
            b'{"name": "v1.flist", "size": 1, "updated": 2, "type": "weird", "md5": "' + b"0" * 32 + b'"}',
            "application/json",
            r"\$\.type",
        ),
        (
            b'{"name": "v1.flist", "size": 1, "updated": 2, "type": "regular", "md5": "../../etc/passwd"}',
            "application/json",
            "md5",
        ),
    ],
    ids=["html", "truncated-json", "missing-md5", "size-as-string", "unknown-type", "md5-path-traversal"],
)
def test_bad_light_answers_are_refused_with_a_clear_error(body: bytes, kind: str, match: str) -> None:
    async def run() -> None:
        async with client(_serve(body, kind)) as hub:
            with pytest.raises(HubAnswerInvalid, match=match):
                await hub.info("golden/v1.flist")

    asyncio.run(run())


def test_duplicate_names_in_a_listing_are_refused() -> None:
    item = {"name": "a.flist", "size": "1.00 KB", "updated": 1, "type": "regular"}
    body = json.dumps([item, item]).encode()

    async def run() -> None:
        async with client(_serve(body)) as hub:
            with pytest.raises(HubAnswerInvalid, match=r"'a\.flist' twice"):
                await hub.list("golden")

    asyncio.run(run())


def test_answers_larger_than_the_limit_are_refused() -> None:
    from zos_upgrade.net import ResponseTooLarge

    body = (RECORDED / "flist-golden-v1.flist.json").read_bytes()

    async def run() -> None:
        hub = HubClient(
            "http://hub.test", transport=httpx.MockTransport(_serve(body)), retry=FAST, max_json_bytes=100
        )
        async with hub:
            with pytest.raises(ResponseTooLarge):
                await hub.files("golden/v1.flist")

    asyncio.run(run())


def test_download_without_destination_is_an_error(tmp_path: Path) -> None:
    from zos_upgrade.hub import HubError

    async def run() -> None:
        async with client() as hub:
            with pytest.raises(HubError, match="no destination"):
                await hub.download("golden/v1.flist")

    asyncio.run(run())


def test_a_hub_serving_other_bytes_than_it_describes_is_refused(tmp_path: Path) -> None:
    light = (RECORDED / "flist-golden-v1.flist-light.json").read_bytes()

    def lying(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/light"):
            return httpx.Response(200, stream=httpx.ByteStream(light))
        return httpx.Response(200, stream=httpx.ByteStream(b"\x1f\x8b not the flist it announced"))

    async def run() -> None:
        async with client(lying) as hub:
            with pytest.raises(HubAnswerInvalid, match="never matched the md5"):
                await hub.download("golden/v1.flist", tmp_path)
        assert list(tmp_path.iterdir()) == []  # nothing unverified is ever kept

    asyncio.run(run())


def test_an_flist_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    from zos_upgrade.net import ResponseTooLarge

    light = (RECORDED / "flist-golden-v1.flist-light.json").read_bytes()

    def big(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/light"):
            return httpx.Response(200, stream=httpx.ByteStream(light))
        return httpx.Response(200, stream=httpx.ByteStream(bytes(5000)))

    async def run() -> None:
        transport = httpx.MockTransport(big)
        async with HubClient("http://hub.test", transport=transport, retry=FAST, max_flist_bytes=4096) as hub:
            with pytest.raises(ResponseTooLarge):
                await hub.download("golden/v1.flist", tmp_path)
        assert list(tmp_path.iterdir()) == []

    asyncio.run(run())
