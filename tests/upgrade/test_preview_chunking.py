"""preview's node fingerprint cuts a node file the way the release's flist was cut (fixed or cdc)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from zos_upgrade.flist.chunking import CDC, FIXED, Chunking, chunking_of
from zos_upgrade.flist.formats import open_flist
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.upgrade.preview import block_fingerprint, content_fingerprint


@pytest.mark.parametrize(("chunking", "other"), [(CDC, FIXED), (FIXED, CDC)])
def test_a_node_file_fingerprints_like_its_flist_entry(tmp_path: Path, chunking: Chunking,
                                                       other: Chunking) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    data = random.Random(1).randbytes(2_000_000)
    (tree / "big").write_bytes(data)
    out = tmp_path / "r.fl"
    asyncio.run(pack(tree, out, DirStore(tmp_path / "blocks"), chunking=chunking))
    with open_flist(out) as reader:
        found = chunking_of(reader)
        entry = next(e for e in reader.entries() if e.path == "/big")
    assert found == chunking
    release = block_fingerprint(ref.key for ref in entry.blocks)
    node_file = tmp_path / "node-big"
    node_file.write_bytes(data)
    assert content_fingerprint(node_file, found, 32) == release
    assert content_fingerprint(data, found, 32) == release  # text already read: the same function
    assert content_fingerprint(node_file, other, 32) != release  # cut the other way: no match
    node_file.write_bytes(data[:-1] + b"\0")
    assert content_fingerprint(node_file, found, 32) != release
