"""The dir:// store against a real directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.flist.stores.blocks import V1_DATA, V1_REF, V2_DATA, V2_REF
from zos_upgrade.flist.blocks import decrypt_block
from zos_upgrade.flist.stores import MAX_STORED_BYTES, BlockMissing, DirStore, StoreError, open_store
from zos_upgrade.fsutil import TEMP_MARK


def test_dir_store_writes_sharded_atomically_and_reads_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"dir://{tmp_path}")
        assert not await store.has(V2_REF.id)
        await store.put(V2_REF.id, V2_DATA)
        name = V2_REF.id.hex()
        assert (tmp_path / name[:2] / name).read_bytes() == V2_DATA
        assert await store.has(V2_REF.id)
        assert decrypt_block(V2_REF, await store.get(V2_REF.id)) == b"version two block" * 100
        await store.aclose()

    asyncio.run(scenario())
    leftovers = [p for p in tmp_path.rglob("*") if TEMP_MARK in p.name]
    assert leftovers == []


def test_dir_store_falls_back_to_flat_layout(tmp_path: Path) -> None:
    (tmp_path / V1_REF.id.hex()).write_bytes(V1_DATA)
    store = DirStore(tmp_path)
    assert asyncio.run(store.get(V1_REF.id)) == V1_DATA
    assert asyncio.run(store.has(V1_REF.id))


def test_dir_store_missing_block_names_id_and_store(tmp_path: Path) -> None:
    store = open_store(f"dir://{tmp_path}")
    with pytest.raises(BlockMissing) as info:
        asyncio.run(store.get(V2_REF.id))
    assert V2_REF.id.hex() in str(info.value) and str(tmp_path) in str(info.value)


def test_dir_store_refuses_odd_ids_and_oversized_files(tmp_path: Path) -> None:
    store = DirStore(tmp_path)
    with pytest.raises(StoreError, match="16 \\(v1\\) or 32 \\(v2\\)"):
        asyncio.run(store.get(b"../../etc"))
    name = V1_REF.id.hex()
    (tmp_path / name[:2]).mkdir()
    (tmp_path / name[:2] / name).write_bytes(b"\0" * (MAX_STORED_BYTES + 1))
    with pytest.raises(StoreError, match="larger than"):
        asyncio.run(store.get(V1_REF.id))
