"""The write API through HubClient against a real server: links, tags, uploads, refusals."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest

from tests.support.hub import GOLDEN_FLISTS, TOKEN_A, TOKEN_B, Hub, HubFactory
from zos_upgrade.hub import HubClient, NotFound, RepoFList, WriteRefused
from zos_upgrade.net import Backoff, RetryPolicy

FAST = RetryPolicy(attempts=2, backoff=Backoff(base=0.01, cap=0.01), deadline=10.0)
V1 = GOLDEN_FLISTS / "v1.flist"
V2 = GOLDEN_FLISTS / "v2.flist"
MD5_V1 = hashlib.md5(V1.read_bytes()).hexdigest()
MD5_V2 = hashlib.md5(V2.read_bytes()).hexdigest()


def named_copy(src: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(src.read_bytes())
    return path


def test_release_engineer_flow(start_hub: HubFactory, tmp_path: Path) -> None:
    async def run(hub: Hub) -> None:
        alpha = HubClient(hub.url, token=TOKEN_A, retry=FAST)
        beta = HubClient(hub.url, token=TOKEN_B, retry=FAST)
        async with alpha, beta:
            assert await alpha.whoami() == "alpha"
            reply = await alpha.upload(named_copy(V1, tmp_path / "up", "app:1.0.0.flist"))
            assert reply["name"] == "app:1.0.0.flist"
            # the real 0-hub's reply: zflist check's JSON output, and its exit status
            files = reply["files"]
            assert (files["success"], files["error"], files["status"]) == (True, None, 0)
            counts = {k: v for k, v in files["response"].items() if k != "content"}
            assert counts == {
                "regular": 10,
                "symlink": 3,
                "directory": 8,
                "special": 0,
                "failure": 0,
                "fullsize": 1824456,
            }
            assert len(files["response"]["content"]) == 21  # every entry but the root, as zflist find
            await alpha.upload(V2, name="app:2.0.0.flist")
            assert (await alpha.info("alpha/app:1.0.0.flist")).md5 == MD5_V1

            await alpha.link("app:1.0.0.flist", "latest.flist")
            latest = await alpha.info("alpha/latest.flist")
            assert (latest.type, latest.target, latest.md5) == ("symlink", "app:1.0.0.flist", MD5_V1)
            await alpha.link("app:2.0.0", "latest")  # names without extension get ".flist"
            latest = await alpha.info("alpha/latest.flist")
            assert (latest.target, latest.md5) == ("app:2.0.0.flist", MD5_V2)
            flist = RepoFList("alpha", latest, alpha)
            assert flist.absolute() == "alpha/app:2.0.0.flist" and str(flist.version()) == "2.0.0"
            assert (await flist.files()).regular == 11

            await beta.crosslink("zos.flist", "alpha", "latest.flist")
            cross = await beta.info("beta/zos.flist")
            assert cross.target == "../alpha/latest.flist" and cross.md5 == MD5_V2
            listed = {e.name: e for e in await beta.list("beta")}
            assert listed["zos.flist"].target == "alpha/latest.flist"
            assert RepoFList("beta", listed["zos.flist"]).absolute() == "alpha/latest.flist"

            await beta.tag("v1", "app.flist", "alpha", "app:1.0.0.flist")
            members = httpx.get(hub.url + "/api/flist/beta/tags/v1").json()
            assert [(m["name"], m["target"]) for m in members] == [("app.flist", "alpha/app:1.0.0.flist")]
            assert httpx.get(hub.url + "/beta/tags/v1/app.flist").content == V1.read_bytes()
            await alpha.crosstag("current", "beta", "v1")
            taglink = {e.name: e for e in await alpha.list("alpha")}["current"]
            assert (taglink.type, taglink.target) == ("taglink", "beta/tags/v1")
            await beta.untag("v1", "app.flist", "alpha", "app:1.0.0.flist")
            assert httpx.get(hub.url + "/api/flist/beta/tags/v1").status_code == 404  # last member: tag gone

            await alpha.rename("app:2.0.0.flist", "app:2.0.1.flist")
            with pytest.raises(NotFound):
                await alpha.info("alpha/latest.flist")  # its target moved away: dangling, not served
            await alpha.link("app:2.0.1.flist", "latest.flist")
            assert (await alpha.info("alpha/latest.flist")).md5 == MD5_V2
            await alpha.delete("app:1.0.0.flist")
            names = [e.name for e in await alpha.list("alpha")]
            assert names == ["app:2.0.1.flist", "current", "latest.flist"]
            reply_raw = httpx.get(
                hub.url + "/api/flist/me/app:2.0.1/link/latest",
                headers={"Authorization": f"Bearer {TOKEN_A}"},
            )
            assert reply_raw.json() == {"status": "success"}

    with start_hub() as hub:
        asyncio.run(run(hub))


def test_write_refusals(start_hub: HubFactory, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.flist"
    corrupt.write_bytes(V1.read_bytes()[:1200])
    garbage = tmp_path / "garbage.flist"
    garbage.write_bytes(b"this is not an flist at all\n" * 10)
    huge = tmp_path / "huge.flist"
    huge.write_bytes(b"\x1f\x8b" + bytes(1_100_000))

    async def run(hub: Hub) -> None:
        nobody = HubClient(hub.url, retry=FAST)
        stranger = HubClient(hub.url, token="not-a-token-of-this-hub-at-all", retry=FAST)
        alpha = HubClient(hub.url, token=TOKEN_A, retry=FAST)
        async with nobody, stranger, alpha:
            with pytest.raises(WriteRefused, match="needs a token"):
                await nobody.upload(V1)
            with pytest.raises(WriteRefused, match="invalid token") as refused:
                await stranger.upload(V1)
            assert refused.value.status == 401
            for path, status, why in (
                (huge, 413, "over the 1000000 bytes allowed"),
                (corrupt, 400, "invalid flist"),
                (garbage, 400, "not an flist"),
            ):
                with pytest.raises(WriteRefused, match=why) as refused:
                    await alpha.upload(path)
                assert refused.value.status == status
            with pytest.raises(WriteRefused, match="holds no block store") as refused:
                await alpha.upload(named_copy(V1, tmp_path, "v1.tar.gz"))  # an archive: hub-side pack
            assert refused.value.status == 400
            await alpha.upload(V1)
            with pytest.raises(WriteRefused, match="already a regular file") as refused:
                await alpha.link("v1.flist", "v1.flist")
            assert refused.value.status == 409
            with pytest.raises(WriteRefused, match="source not found"):
                await alpha.link("missing.flist", "latest.flist")
            assert [e.name for e in await alpha.list("alpha")] == ["v1.flist"]  # nothing else was stored

        no_auth = httpx.get(hub.url + "/api/flist/me")
        assert no_auth.status_code == 401
        assert no_auth.json() == {"status": "error", "message": "no authorization provided"}
        files = {"file": ("v2.flist", V2.read_bytes())}
        other = httpx.post(
            hub.url + "/api/flist/alpha/upload-flist", files=files,
            headers={"Authorization": f"bearer {TOKEN_B}"},
        )
        assert other.status_code == 403 and "not 'alpha'" in other.json()["message"]
        mine = httpx.post(
            hub.url + "/api/flist/beta/upload-flist", files=files,
            headers={"Authorization": f"bearer {TOKEN_B}"},
        )
        assert mine.status_code == 200 and mine.json()["payload"]["name"] == "v2.flist"
        sneaky = httpx.post(
            hub.url + "/api/flist/me/upload-flist",
            files={"file": ("..%2f..%2fx.flist", V2.read_bytes())},
            headers={"Authorization": f"bearer {TOKEN_B}"},
        )
        assert sneaky.status_code == 400
        no_file = httpx.post(
            hub.url + "/api/flist/me/upload-flist",
            data={"other": "x"},
            headers={"Authorization": f"bearer {TOKEN_B}"},
        )
        assert no_file.status_code == 400 and "not a multipart" in no_file.json()["message"]
        wrong_field = httpx.post(
            hub.url + "/api/flist/me/upload-flist",
            files={"flist": ("v2.flist", V2.read_bytes())},
            headers={"Authorization": f"bearer {TOKEN_B}"},
        )
        assert wrong_field.status_code == 400 and "no file found" in wrong_field.json()["message"]
        assert sorted(p.name for p in hub.root.rglob("*")) == ["alpha", "beta", "v1.flist", "v2.flist"]

    with start_hub() as hub:
        asyncio.run(run(hub))
