"""The hub's block folder never follows a link out of itself: a symlinked fan-out folder (or block
file) is "not found" for a GET and refused for a PUT, and nothing outside the folder is read or written."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tests.support.hub import TOKEN_A, HubFactory
from tests.support.node import tree_digest
from zos_upgrade.flist.stores import BlockMissing
from zos_upgrade.hubserver.storage import BlockFolder, LinkInBlockFolder

AUTH = {"Authorization": f"bearer {TOKEN_A}"}


def _block(not_prefix: str = "") -> tuple[bytes, str]:
    """Random bytes and their v2 block id, the id not starting with ``not_prefix``."""
    while True:
        data = os.urandom(1000)
        hexid = hashlib.blake2b(data, digest_size=32).hexdigest()
        if not not_prefix or not hexid.startswith(not_prefix):
            return data, hexid


def test_symlinked_fanout_folder_is_not_followed_by_the_real_hub(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    data, hexid = _block()
    other, other_id = _block(not_prefix=hexid[:2])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / hexid).write_bytes(b"a secret that is not a block of this hub")
    (outside / "secret").write_bytes(b"another secret")
    with start_hub(blocks=True) as hub:
        assert hub.blocks is not None
        os.symlink(outside, hub.blocks / hexid[:2])  # the fan-out folder of `hexid`, leading outside
        flat_id = _block()[1]
        os.symlink(outside / "secret", hub.blocks / flat_id)  # the flat layout: a block file that links out
        outside_before, blocks_before = tree_digest(outside), tree_digest(hub.blocks)
        storage_before = tree_digest(hub.root)
        url = hub.url + "/blocks/"

        # reads: never through the link
        for path in (f"{hexid[:2]}/{hexid}", hexid, flat_id, f"{flat_id[:2]}/{flat_id}"):
            got = httpx.get(url + path)
            assert got.status_code == 404, (path, got.text)
            assert b"secret" not in got.content

        # writes: refused, nothing written through the link (nor beside it)
        put = httpx.put(url + hexid, content=data, headers=AUTH)
        assert put.status_code == 409, put.text
        assert f"block {hexid} not stored" in put.text and "not a plain folder" in put.text
        assert str(outside) not in put.text  # the hub's own paths are not shown to clients
        assert tree_digest(outside) == outside_before
        assert tree_digest(hub.blocks) == blocks_before

        # the rest of the hub is untouched and still serves
        stored = httpx.put(url + other_id, content=other, headers=AUTH)
        assert stored.status_code == 201, stored.text
        assert httpx.get(url + f"{other_id[:2]}/{other_id}").content == other
        assert httpx.get(hub.url + "/api/repositories").status_code == 200
        assert tree_digest(hub.root) == storage_before
        assert tree_digest(outside) == outside_before


def test_block_folder_store_api_refuses_links_below_its_root(tmp_path: Path) -> None:
    """The same rules through the store interface the upload check uses (``has``/``get``/``put``)."""
    folder = tmp_path / "blocks"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    data, hexid = _block()
    block_id = bytes.fromhex(hexid)
    os.symlink(outside, folder / hexid[:2])
    (outside / hexid).write_bytes(data)  # a real copy of the block, but only reachable through the link
    store = BlockFolder(folder)

    async def run() -> None:
        assert not await store.has(block_id)
        with pytest.raises(BlockMissing):
            await store.get(block_id)
        with pytest.raises(LinkInBlockFolder, match="not a plain folder"):
            await store.put(block_id, data)

    asyncio.run(run())
    assert sorted(os.listdir(outside)) == [hexid]
    assert not store.holds(hexid)
    os.unlink(folder / hexid[:2])
    asyncio.run(store.put(block_id, data))  # a plain fan-out folder is written as before
    assert store.holds(hexid) and (folder / hexid[:2] / hexid).read_bytes() == data
    assert store.read_block(block_id) == data
