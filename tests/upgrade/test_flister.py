"""Flister: a verified release -> complete tree under <state>/mounts/<md5>, through the shared block cache.

Downloading and checking the flist file is the sources' job (``tests/sources``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.support.local_releases import packed, verified_release
from tests.support.node import Exe
from zos_upgrade.flist import FlistError
from zos_upgrade.fsutil import TEMP_MARK
from zos_upgrade.upgrade.flister import Flister, MountError


def flister_for(tmp_path: Path, blocks: Path) -> Flister:
    return Flister(tmp_path / "state", store_url=f"dir://{blocks}")


def test_mount_materializes_and_a_second_mount_rebuilds_from_the_cache(tmp_path: Path) -> None:
    big = os.urandom(700 * 1024)  # two blocks
    v1, blocks = packed(tmp_path, "a.fl", {"bin/tool": Exe("#!/bin/sh\n"), "data/big": big})
    v2, _ = packed(tmp_path, "b.fl", {"bin/tool": Exe("#!/bin/sh\necho 2\n"), "data/big": big})
    flister = flister_for(tmp_path, blocks)
    a = verified_release(v1, flister.downloads_dir, version="1.0.0")
    b = verified_release(v2, flister.downloads_dir, version="2.0.0")
    first = asyncio.run(flister.mount(a))
    assert (first.path / "data/big").read_bytes() == big
    assert os.access(first.path / "bin/tool", os.X_OK)
    assert first.path.parent == tmp_path / "state" / "mounts" and first.path.name == first.md5 == a.md5
    assert first.flist == a.flist
    assert first.report.blocks_fetched == 3 and first.report.blocks_from_cache == 0
    again = asyncio.run(flister.mount(a))
    assert again.path == first.path and again.report.blocks_fetched == 0
    assert again.report.blocks_from_cache == 3  # rebuilt, never reused: no download for it
    second = asyncio.run(flister.mount(b))
    # only the changed block travels
    assert second.report.blocks_from_cache == 2 and second.report.blocks_fetched == 1


@pytest.mark.parametrize("workers", [0, 1])
def test_the_writer_processes_the_node_is_configured_for(tmp_path: Path, workers: int) -> None:
    flist, blocks = packed(tmp_path, "a.fl", {f"data/f{i}": os.urandom(1000) for i in range(120)})
    flister = Flister(tmp_path / "state", store_url=f"dir://{blocks}", workers=workers)
    mount = asyncio.run(flister.mount(verified_release(flist, flister.downloads_dir, version="1.0.0")))
    assert mount.report.writer_processes == workers and mount.report.files == 120
    assert (mount.path / "data" / "f7").stat().st_size == 1000


def test_the_release_block_store_serves_when_none_is_configured(tmp_path: Path) -> None:
    # the hub's /blocks (here a dir://) is the last resort behind the routes the flist records
    flist, blocks = packed(tmp_path, "a.fl", {"etc/x": "x" * 100})
    moved = tmp_path / "elsewhere"
    blocks.rename(moved)
    flister = Flister(tmp_path / "state")
    release = verified_release(flist, flister.downloads_dir, version="1.0.0", block_store=f"dir://{moved}")
    assert (asyncio.run(flister.mount(release)).path / "etc/x").read_text() == "x" * 100


def test_missing_block_leaves_no_partial_mount_and_sweep_cleans_crash_leftovers(tmp_path: Path) -> None:
    flist, blocks = packed(tmp_path, "a.fl", {"etc/x": "x" * 100})
    for path in blocks.rglob("*"):
        if path.is_file():
            path.unlink()
    flister = flister_for(tmp_path, blocks)
    with pytest.raises(FlistError, match="block"):
        asyncio.run(flister.mount(verified_release(flist, flister.downloads_dir, version="1.0.0")))
    assert [p.name for p in flister.mounts_dir.iterdir()] == []
    stale = flister.mounts_dir / f".abc{TEMP_MARK}123-dead"
    (stale / "etc").mkdir(parents=True)
    half = flister.downloads_dir / f".0123.fl{TEMP_MARK}9-beef"
    half.write_bytes(b"half a download")
    assert sorted(flister.sweep()) == sorted([stale, half]) and not stale.exists() and not half.exists()


def test_umount_refuses_paths_that_are_not_its_mounts(tmp_path: Path) -> None:
    flister = Flister(tmp_path / "state", store_url="dir:///nowhere")
    victim = tmp_path / "important"
    victim.mkdir()
    with pytest.raises(MountError, match="not a mount of this Flister"):
        flister.umount(victim)
    assert victim.exists()


def test_a_release_without_any_block_store_is_a_clear_error(tmp_path: Path) -> None:
    flist, _ = packed(tmp_path, "a.fl", {"etc/x": "x"})  # records no routes
    flister = Flister(tmp_path / "state")
    with pytest.raises(MountError, match="names no block store"):
        asyncio.run(flister.mount(verified_release(flist, flister.downloads_dir, version="1.0.0")))
