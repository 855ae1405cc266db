"""The block store over HTTP, and uploads refused while the hub lacks a block they need."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tests.support.hub import TOKEN_A, Hub, HubFactory
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.hub import HubClient, WriteRefused
from zos_upgrade.net import Backoff, RetryPolicy

FAST = RetryPolicy(attempts=2, backoff=Backoff(base=0.01, cap=0.01), deadline=10.0)


def packed_release(tmp_path: Path, suffix: str) -> tuple[Path, Path]:
    """A small tree packed with our flist layer: (flist file, folder of its blocks)."""
    tree = tmp_path / f"tree{suffix}"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_bytes(os.urandom(700_000))  # two blocks
    (tree / "README").write_text("hello\n")
    blocks = tmp_path / f"blocks{suffix}"
    out = tmp_path / f"release{suffix}"
    asyncio.run(pack(tree, out, DirStore(blocks)))
    return out, blocks


def stored_blocks(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("suffix", [".flist", ".fl"], ids=["v1", "v2"])
def test_upload_needs_every_block_in_the_hub_store(
    start_hub: HubFactory, tmp_path: Path, suffix: str
) -> None:
    flist, block_dir = packed_release(tmp_path, suffix)
    blocks = stored_blocks(block_dir)
    assert len(blocks) >= 3

    async def run(hub: Hub) -> None:
        async with HubClient(hub.url, token=TOKEN_A, retry=FAST) as client:
            with pytest.raises(
                WriteRefused, match=rf"{len(blocks)} block\(s\) are not in this hub's block store"
            ):
                await client.upload(flist)
            first, *rest = sorted(blocks)
            await client.put_block(first, blocks[first])
            with pytest.raises(WriteRefused, match=rf"{len(rest)} block\(s\)"):
                await client.upload(flist)
            for hexid in rest:
                await client.put_block(hexid, blocks[hexid])
                assert await client.has_block(hexid)
            reply = await client.upload(flist)
            counts = reply["files"]["response"]
            assert counts["regular"] == 2 and counts["failure"] == 0
            for hexid, data in blocks.items():
                assert await client.get_block(hexid) == data

    with start_hub(blocks=True) as hub:
        asyncio.run(run(hub))


def test_block_routes(start_hub: HubFactory) -> None:
    data = os.urandom(1000)
    v1_id = hashlib.blake2b(data, digest_size=16).hexdigest()
    v2_id = hashlib.blake2b(data, digest_size=32).hexdigest()
    auth = {"Authorization": f"bearer {TOKEN_A}"}
    with start_hub(blocks=True, config=f'max_block_bytes = 4096\n[tokens]\n"{TOKEN_A}" = "alpha"\n') as hub:
        url = hub.url + "/blocks/"
        assert httpx.put(url + v1_id, content=data).status_code == 401  # a token is needed
        created = httpx.put(url + v1_id, content=data, headers=auth)
        assert created.status_code == 201 and created.json()["payload"] == {"id": v1_id, "stored": True}
        again = httpx.put(url + v1_id, content=data, headers=auth)
        assert again.status_code == 200 and again.json()["payload"]["stored"] is False
        assert httpx.put(url + v2_id, content=data, headers=auth).status_code == 201
        wrong = httpx.put(
            url + v2_id.replace(v2_id[-1], "0" if v2_id[-1] != "0" else "1"), content=data, headers=auth
        )
        assert wrong.status_code == 400 and "does not hash" in wrong.json()["message"]
        assert httpx.put(url + "abc", content=data, headers=auth).status_code == 400  # not 16/32 bytes
        assert httpx.put(url + v1_id.upper(), content=data, headers=auth).status_code == 400
        big = os.urandom(5000)
        too_big = httpx.put(url + hashlib.blake2b(big, digest_size=16).hexdigest(), content=big, headers=auth)
        assert too_big.status_code == 413

        got = httpx.get(f"{url}{v1_id[:2]}/{v1_id}")
        assert got.content == data and got.headers["etag"] == f'"{v1_id}"'
        assert httpx.get(url + v2_id).content == data  # the flat layout the http:// store falls back to
        assert (
            httpx.get(f"{url}{v1_id[:2]}/{v1_id}", headers={"If-None-Match": f'"{v1_id}"'}).status_code == 304
        )
        head = httpx.head(f"{url}{v1_id[:2]}/{v1_id}")
        assert head.status_code == 200 and head.headers["content-length"] == "1000"
        part = httpx.get(f"{url}{v1_id[:2]}/{v1_id}", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        assert httpx.get(f"{url}{v1_id[:2]}/{v1_id}", headers={"Range": "bytes=1000-"}).status_code == 416
        assert httpx.get(f"{url}ff/{v1_id}").status_code == 404  # wrong shard folder
        assert httpx.get(f"{url}00/{'00' * 16}").status_code == 404
        assert (hub.blocks or Path()).joinpath(v1_id[:2], v1_id).read_bytes() == data


def test_v2_flist_listing_and_metadata_are_its_tags(start_hub: HubFactory, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "motd").write_text("hi\n")
    os.symlink("motd", tree / "etc" / "greeting")
    out = tmp_path / "zos:1.2.3.fl"
    asyncio.run(pack(tree, out, DirStore(tmp_path / "b"), tags={"version": "1.2.3", "author": "hub-test"}))

    async def run(hub: Hub) -> None:
        async with HubClient(hub.url, token=TOKEN_A, retry=FAST) as client:
            await client.upload(out)
            tree_answer = await client.files("alpha/zos:1.2.3.fl")
            # stored order (the packer writes a folder's entries sorted by name); a link's size is its text
            assert [(c.path, c.size) for c in tree_answer.content] == [
                ("/etc", (tree / "etc").stat().st_size),
                ("/etc/greeting", 4),
                ("/etc/motd", 3),
            ]
            assert (tree_answer.regular, tree_answer.symlink, tree_answer.directory) == (1, 1, 1)
            assert tree_answer.fullsize == 3
        metadata = httpx.get(hub.url + "/api/flist/alpha/zos:1.2.3.fl/metadata").json()
        assert metadata == {"version": "1.2.3", "author": "hub-test"}
        light = httpx.get(hub.url + "/api/flist/alpha/zos:1.2.3.fl/light").json()
        assert light["name"] == "zos:1.2.3.fl" and light["md5"] == hashlib.md5(out.read_bytes()).hexdigest()

    with start_hub() as hub:
        asyncio.run(run(hub))
