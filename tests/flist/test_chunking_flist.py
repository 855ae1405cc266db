"""Content-defined (cdc) v2 flists end to end: pack, the tag, a real hub, unpack, and what is refused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.support.hub import HubFactory, start_hub
from zos_upgrade.cli import cli
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.chunking import CDC, FIXED, ChunkingError, block_spans, chunking_of
from zos_upgrade.flist.formats import open_flist, write_flist
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.model import Entry, EntryKind, FlistError, HostileFlist
from zos_upgrade.flist.pack import PackError, pack
from zos_upgrade.flist.stores import DirStore, open_store

__all__ = ["start_hub"]  # the fixture

MiB = 1024 * 1024


def _tree(root: Path, seed: int = 1, insert: bytes = b"") -> Path:
    rng = random.Random(seed)
    (root / "bin").mkdir(parents=True)
    big = rng.randbytes(3 * MiB)
    (root / "bin" / "big").write_bytes(big[:50_000] + insert + big[50_000:])
    (root / "bin" / "tiny").write_bytes(b"x")
    (root / "empty").write_bytes(b"")
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("hello\n")
    os.symlink("big", root / "bin" / "alias")
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def test_a_cdc_flist_round_trips_through_a_real_hub(tmp_path: Path, start_hub: HubFactory) -> None:
    with start_hub(blocks=True) as hub:
        assert hub.blocks is not None
        (hub.root / "alpha").mkdir(parents=True)
        src = _tree(tmp_path / "v1")
        report = asyncio.run(pack(src, hub.root / "alpha" / "rel.fl", DirStore(hub.blocks), chunking=CDC))
        assert report.blocks > 3 * MiB // CDC.max_size  # cut smaller than fixed blocks
        # the node's side: the flist downloaded from the hub, its blocks over http:// from the hub
        flist = tmp_path / "rel.fl"
        flist.write_bytes(httpx.get(f"{hub.url}/alpha/rel.fl").raise_for_status().content)
        with open_flist(flist) as reader:
            assert chunking_of(reader) == CDC
            assert reader.tags()["chunking"] == CDC.tag_value
            big = next(e for e in reader.entries() if e.path == "/bin/big")
        assert len(big.lengths) == len(big.blocks) and sum(big.lengths) == big.size
        assert all(CDC.min_size <= n <= CDC.max_size for n in big.lengths[:-1])
        assert block_spans(big)[-1] == (big.size - big.lengths[-1], big.lengths[-1])

        async def unpack(path: Path, dest: Path) -> int:
            store = open_store(f"{hub.url}/blocks")
            try:
                done = await materialize(path, dest, store=store, cache=BlockCache(tmp_path / "cache"),
                                         workers=0)
            finally:
                await store.aclose()
            return done.bytes_downloaded

        first = asyncio.run(unpack(flist, tmp_path / "dest1"))
        assert _files(tmp_path / "dest1") == _files(src)
        assert os.readlink(tmp_path / "dest1" / "bin" / "alias") == "big"

        # a second release with 100 KB inserted near the start of the big file: the node fetches
        # the chunks around the insertion, not the rest of the file
        src2 = _tree(tmp_path / "v2", insert=random.Random(9).randbytes(100_000))
        asyncio.run(pack(src2, hub.root / "alpha" / "rel2.fl", DirStore(hub.blocks), chunking=CDC))
        flist2 = tmp_path / "rel2.fl"
        flist2.write_bytes(httpx.get(f"{hub.url}/alpha/rel2.fl").raise_for_status().content)
        second = asyncio.run(unpack(flist2, tmp_path / "dest2"))
        assert _files(tmp_path / "dest2") == _files(src2)
        assert first > 3 * MiB and second < 100_000 + 3 * CDC.max_size


def test_the_cli_packs_cdc_and_refuses_v1(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    store = f"dir://{tmp_path / 'blocks'}"
    result = CliRunner().invoke(cli, ["flist", "pack", str(src), "-o", str(tmp_path / "r.fl"),
                                      "--store", store, "--chunking", "cdc"])
    assert result.exit_code == 0, result.output
    with open_flist(tmp_path / "r.fl") as reader:
        assert chunking_of(reader) == CDC
    default = CliRunner().invoke(cli, ["flist", "pack", str(src), "-o", str(tmp_path / "f.fl"),
                                       "--store", store])
    assert default.exit_code == 0, default.output
    with open_flist(tmp_path / "f.fl") as reader:
        assert chunking_of(reader) is FIXED and "chunking" not in reader.tags()
        assert all(not e.lengths for e in reader.entries())
    v1 = CliRunner().invoke(cli, ["flist", "pack", str(src), "-o", str(tmp_path / "r.flist"),
                                  "--store", store, "--chunking", "cdc"])
    assert v1.exit_code == 1 and "needs a v2 .fl" in v1.output
    assert not (tmp_path / "r.flist").exists()
    bad = CliRunner().invoke(cli, ["flist", "pack", str(src), "-o", str(tmp_path / "b.fl"),
                                   "--store", store, "--chunking", "rabin"])
    assert bad.exit_code == 2 and "--chunking" in bad.output


def test_pack_refuses_v1_cdc_and_hand_made_chunking_tags(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    store = DirStore(tmp_path / "blocks")
    with pytest.raises(PackError, match=r"needs a v2 \.fl"):
        asyncio.run(pack(src, tmp_path / "r.flist", store, chunking=CDC))
    with pytest.raises(PackError, match="set by the packer"):
        asyncio.run(pack(src, tmp_path / "r.fl", store, tags={"chunking": "fastcdc2020:1024:2048:4096"}))
    with pytest.raises(PackError, match="contradicts"):
        asyncio.run(pack(src, tmp_path / "r.fl", store, chunking=CDC,
                         tags={"chunking": "fastcdc2020:1024:2048:4096"}))
    assert not (tmp_path / "r.fl").exists() and not (tmp_path / "r.flist").exists()


def test_writers_refuse_block_lengths_where_they_do_not_belong(tmp_path: Path) -> None:
    sized = Entry("/f", EntryKind.FILE, 0o100644, size=3, blocks=(_ref(),), lengths=(3,))
    root = Entry("/", EntryKind.DIR, 0o40755)
    with pytest.raises(FlistError, match="v1 flist records a fixed block size"):
        write_flist(tmp_path / "a.flist", [root, sized])
    with pytest.raises(ChunkingError, match="v1 flist records a fixed block size"):
        write_flist(tmp_path / "b.flist", [root], tags={"chunking": CDC.tag_value or ""})
    with pytest.raises(FlistError, match="need a cdc flist"):
        write_flist(tmp_path / "c.fl", [root, sized])
    unsized = Entry("/f", EntryKind.FILE, 0o100644, size=3, blocks=(_ref(),))
    with pytest.raises(FlistError, match="needs every block's length"):
        write_flist(tmp_path / "d.fl", [root, unsized], tags={"chunking": CDC.tag_value or ""})
    assert not any(tmp_path.iterdir())


def _ref() -> object:
    from zos_upgrade.flist.model import BlockRef

    return BlockRef(b"\1" * 32, b"\2" * 32)


def _packed(tmp_path: Path) -> Path:
    out = tmp_path / "r.fl"
    asyncio.run(pack(_tree(tmp_path / "src"), out, DirStore(tmp_path / "blocks"), chunking=CDC))
    return out


def _edit(path: Path, *statements: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        for sql in statements:
            db.execute(sql)
        db.commit()


_BIG = "(SELECT ino FROM inode WHERE name = 'big')"


@pytest.mark.parametrize(("statements", "message"), [
    # lengths that do not add up to the size
    ([f"UPDATE block SET size = size + 1 WHERE rowid = (SELECT min(rowid) FROM block WHERE ino = {_BIG})"],
     "add up to"),
    ([f"UPDATE inode SET size = size - 1 WHERE ino = {_BIG}"], "add up to"),
    # a missing, zero, negative, text or oversized length
    ([f"UPDATE block SET size = NULL WHERE ino = {_BIG}"], "block length None"),
    ([f"UPDATE block SET size = 0 WHERE rowid = (SELECT min(rowid) FROM block WHERE ino = {_BIG})"],
     "block length 0"),
    ([f"UPDATE block SET size = -5 WHERE rowid = (SELECT min(rowid) FROM block WHERE ino = {_BIG})"],
     "block length -5"),
    ([f"UPDATE block SET size = 'x' WHERE rowid = (SELECT min(rowid) FROM block WHERE ino = {_BIG})"],
     "block length 'x'"),
    ([f"UPDATE block SET size = {MiB} WHERE rowid = (SELECT min(rowid) FROM block WHERE ino = {_BIG})"],
     r"outside 1\.\.262144"),
    # the tag and the table disagree
    (["DELETE FROM tag WHERE key = 'chunking'"], "records block lengths but no cdc chunking tag"),
    (["UPDATE tag SET value = 'fastcdc2020:16384:65536:9999999' WHERE key = 'chunking'"], "expected 1024"),
    (["UPDATE tag SET value = 'buzhash' WHERE key = 'chunking'"], "not one this node knows"),
])
def test_a_hostile_cdc_block_table_is_refused_at_the_boundary(tmp_path: Path, statements: list[str],
                                                              message: str) -> None:
    out = _packed(tmp_path)
    _edit(out, *statements)
    with open_flist(out) as reader, pytest.raises(HostileFlist, match=message):
        list(reader.entries())
    # materialize reads the same entries: nothing is written
    with pytest.raises(HostileFlist):
        asyncio.run(materialize(out, tmp_path / "dest", store=DirStore(tmp_path / "blocks"), workers=0))
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


def test_a_cdc_tag_without_block_lengths_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "f.fl"
    asyncio.run(pack(_tree(tmp_path / "src"), out, DirStore(tmp_path / "blocks")))
    _edit(out, f"INSERT INTO tag (key, value) VALUES ('chunking', '{CDC.tag_value}')")
    with open_flist(out) as reader, pytest.raises(HostileFlist, match="lacks the block lengths"):
        list(reader.entries())


def test_verify_catches_recorded_lengths_that_lie_but_add_up(tmp_path: Path) -> None:
    """Lengths moved between two blocks still add up to the size (the reader cannot tell), but each
    disagrees with what its block decrypts to: verify names both blocks and the file."""
    from zos_upgrade.flist.verify import verify

    out = _packed(tmp_path)
    assert asyncio.run(verify(out, DirStore(tmp_path / "blocks"))).ok
    first = f"(SELECT min(rowid) FROM block WHERE ino = {_BIG})"
    _edit(out, f"UPDATE block SET size = size + 1 WHERE rowid = {first}",
          f"UPDATE block SET size = size - 1 WHERE rowid = {first} + 1")
    report = asyncio.run(verify(out, DirStore(tmp_path / "blocks")))
    assert not report.missing and len(report.corrupt) == 2
    assert all(p.paths == ("/bin/big",) and "the flist records" in p.reason for p in report.corrupt)
