"""Every hostile flist of the generator, in each format it allows, through ``open_flist`` + ``materialize``.

Each must raise its typed error naming what was wrong, leave no destination behind and write nothing
anywhere else: the whole work directory (store and flist file included) hashes the same before and
after.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.hostile.badflists import SUFFIX, BadFlist, Format, param_id, params
from tests.support.node import tree_digest
from zos_upgrade.flist import Limits, block_id_matches, open_flist
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.stores import DirStore


def read_and_materialize(flist: Path, dest: Path, store: DirStore, cache: BlockCache, limits: Limits) -> None:
    async def run() -> None:
        with open_flist(flist, limits) as reader:
            await materialize(reader, dest, store=store, cache=cache)

    asyncio.run(run())


@pytest.mark.parametrize(("case", "fmt"), params(), ids=param_id)
def test_hostile_flist_is_refused_and_nothing_is_written(tmp_path: Path, case: BadFlist, fmt: Format) -> None:
    work = tmp_path / "work"
    store = DirStore(work / "blocks")
    (work / "blocks").mkdir(parents=True)
    flist = work / f"bad{SUFFIX[fmt]}"
    case.build[fmt](flist, store)
    cache = BlockCache(work / "cache")
    (work / "cache").mkdir()
    before = tree_digest(work, exclude=("cache",))
    dest = work / "dest"

    with pytest.raises(case.error) as caught:
        read_and_materialize(flist, dest, store, cache, case.limits or Limits())

    message = str(caught.value)
    assert case.fragment_for(fmt) in message, message
    assert not dest.exists()
    assert tree_digest(work, exclude=("cache",)) == before
    assert_cache_authentic(work / "cache")


def assert_cache_authentic(cache: Path) -> None:
    """The block cache may keep blocks a refused flist fetched, but only authentic ones."""
    for path in cache.rglob("*"):
        if path.is_file():
            assert block_id_matches(bytes.fromhex(path.name), path.read_bytes()), path
