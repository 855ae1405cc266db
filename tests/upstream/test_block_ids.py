"""Block ids of the same content from the real zflist and from us (docs/compat.md, "Block ids").

A v1 block's key is the hash of the plain chunk and its id the hash of the stored (snappy-compressed,
then XXTEA-encrypted) bytes. Snappy output is not canonical: zflist's encoder is Google's C++ snappy
(libsnappy), ours is cramjam's (the same bytes as the Rust `snap` crate of rfs). The keys always
agree; an id agrees only where both encoders wrote the same bytes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.libsnappy import libsnappy_compress
from tests.support.upstream import ZdbServer
from tests.support.zflist import Zflist
from tests.upstream.trees import make_mixed_tree
from zos_upgrade.flist import EntryKind, open_flist
from zos_upgrade.flist.blocks import BLOCK_SIZE, decrypt_block, encrypt_block_v1


def test_zflist_ids_are_libsnappy_ids_and_keys_always_agree(
    tmp_path: Path, real_zdb: ZdbServer, zflist_bin: Path
) -> None:
    compress = libsnappy_compress()
    if compress is None:
        pytest.fail("libsnappy is missing: `make tools` installs libsnappy-dev")
    src = make_mixed_tree(tmp_path / "src")
    # real content too: this interpreter's own standard library modules
    shutil.copytree(Path(os.__file__).parent / "json", src / "stdlib-json")
    shutil.copytree(Path(os.__file__).parent / "email", src / "stdlib-email")
    out = tmp_path / "theirs.flist"
    Zflist(zflist_bin, tmp_path / "mnt", real_zdb.port).pack(src, out)

    blocks = same_as_ours = 0
    with open_flist(out) as reader:
        for entry in reader.entries():
            if entry.kind is not EntryKind.FILE:
                continue
            data = (src / entry.path.lstrip("/")).read_bytes()
            for i, ref in enumerate(entry.blocks):
                chunk = data[i * BLOCK_SIZE: (i + 1) * BLOCK_SIZE]
                ours, _ = encrypt_block_v1(chunk)
                libsnappy_ref, libsnappy_stored = encrypt_block_v1(chunk, compress=compress)
                assert ours.key == ref.key, entry.path  # the key: always the same
                assert libsnappy_ref == ref, entry.path  # zflist's id is libsnappy's, every time
                assert decrypt_block(ref, real_zdb.command("GET", ref.id)) == chunk
                assert libsnappy_stored == real_zdb.command("GET", ref.id)
                blocks += 1
                same_as_ours += ours.id == ref.id
    assert blocks > 20
    # the share differs per content (measured on bigger trees: benchmarks/snappy_ids.py); here it
    # is only reported, the test pins the cause: the encoder, not the framing or the key
    print(f"{same_as_ours} of {blocks} zflist block ids equal ours")
