"""Flister: flist -> complete tree under <state>/mounts/<md5>, through the shared block cache."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.support.node import Exe, write_tree
from zos_upgrade.flist import FlistError
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.fsutil import TEMP_MARK
from zos_upgrade.publisher.base import HashMismatch
from zos_upgrade.publisher.signing import file_hash
from zos_upgrade.upgrade.flister import Flister, MountError


def packed(tmp_path: Path, name: str, tree: dict[str, object]) -> tuple[Path, Path]:
    src, blocks = tmp_path / f"src-{name}", tmp_path / "blocks"
    write_tree(src, tree)  # type: ignore[arg-type]
    out = tmp_path / name
    asyncio.run(pack(src, out, DirStore(blocks)))
    return out, blocks


def flister_for(tmp_path: Path, files: dict[str, Path], blocks: Path, fetched: list[str]) -> Flister:
    async def fetch(url: str) -> bytes:
        fetched.append(url)
        return files[url].read_bytes()

    return Flister(tmp_path / "state", None, fetch_url=fetch, store_url=f"dir://{blocks}")


def test_mount_materializes_once_and_reuses_the_tree(tmp_path: Path) -> None:
    big = os.urandom(700 * 1024)  # two blocks
    v1, blocks = packed(tmp_path, "a.fl", {"bin/tool": Exe("#!/bin/sh\n"), "data/big": big})
    v2, _ = packed(tmp_path, "b.fl", {"bin/tool": Exe("#!/bin/sh\necho 2\n"), "data/big": big})
    fetched: list[str] = []
    flister = flister_for(tmp_path, {"http://h/a.fl": v1, "http://h/b.fl": v2}, blocks, fetched)
    first = asyncio.run(flister.mount("http://h/a.fl"))
    assert (first.path / "data/big").read_bytes() == big
    assert os.access(first.path / "bin/tool", os.X_OK)
    assert first.path.parent == tmp_path / "state" / "mounts" and first.path.name == first.md5
    assert first.report.blocks_fetched == 3 and first.report.blocks_from_cache == 0
    again = asyncio.run(flister.mount("http://h/a.fl"))
    assert again.path == first.path and again.report.blocks_fetched == 0
    second = asyncio.run(flister.mount("http://h/b.fl"))
    # only the changed block travels
    assert second.report.blocks_from_cache == 2 and second.report.blocks_fetched == 1


@pytest.mark.parametrize("workers", [0, 1])
def test_the_writer_processes_the_node_is_configured_for(tmp_path: Path, workers: int) -> None:
    flist, blocks = packed(tmp_path, "a.fl", {f"data/f{i}": os.urandom(1000) for i in range(120)})
    flister = Flister(tmp_path / "state", None, store_url=f"dir://{blocks}", workers=workers,
                      fetch_url=lambda _url: asyncio.to_thread(flist.read_bytes))
    mount = asyncio.run(flister.mount("http://h/a.fl"))
    assert mount.report.writer_processes == workers and mount.report.files == 120
    assert (mount.path / "data" / "f7").stat().st_size == 1000


def test_hash_mismatch_refuses_before_materializing(tmp_path: Path) -> None:
    flist, blocks = packed(tmp_path, "a.fl", {"etc/x": "x"})
    flister = flister_for(tmp_path, {"http://h/a.fl": flist}, blocks, [])
    with pytest.raises(HashMismatch, match="the signed release pins"):
        asyncio.run(flister.mount("http://h/a.fl", expected_hash="00" * 32))
    assert not (tmp_path / "state" / "mounts").exists() or not any((tmp_path / "state" / "mounts").iterdir())
    good = asyncio.run(flister.mount("http://h/a.fl", expected_hash=file_hash(flist)))
    assert (good.path / "etc/x").read_text() == "x"


def test_missing_block_leaves_no_partial_mount_and_sweep_cleans_crash_leftovers(tmp_path: Path) -> None:
    flist, blocks = packed(tmp_path, "a.fl", {"etc/x": "x" * 100})
    for path in blocks.rglob("*"):
        if path.is_file():
            path.unlink()
    flister = flister_for(tmp_path, {"http://h/a.fl": flist}, blocks, [])
    with pytest.raises(FlistError, match="block"):
        asyncio.run(flister.mount("http://h/a.fl"))
    assert [p.name for p in flister.mounts_dir.iterdir()] == []
    stale = flister.mounts_dir / f".abc{TEMP_MARK}123-dead"
    (stale / "etc").mkdir(parents=True)
    assert flister.sweep() == [stale] and not stale.exists()


def test_umount_refuses_paths_that_are_not_its_mounts(tmp_path: Path) -> None:
    flister = Flister(tmp_path / "state", None, store_url="dir:///nowhere")
    victim = tmp_path / "important"
    victim.mkdir()
    with pytest.raises(MountError, match="not a mount of this Flister"):
        flister.umount(victim)
    assert victim.exists()


def test_an_fqdn_without_a_hub_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MountError, match="no hub is configured"):
        asyncio.run(Flister(tmp_path, None).mount("tf-zos/zos:1.0.0.fl"))
