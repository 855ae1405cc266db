"""flist/delta.py: a delta rebuilds the new flist byte for byte (v2 raw, v1 gzip), and every hostile
delta is refused with DeltaInvalid before anything is rebuilt."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import pytest

from tests.support.deltas import flist_pair, forged_delta
from zos_upgrade.flist.delta import DeltaInvalid, apply_delta, make_delta, read_header
from zos_upgrade.flist.delta_files import delta_bases, rebuild_from_delta

MAX = 64 * 1024 * 1024


@pytest.mark.parametrize("suffix", [".fl", ".flist"])
def test_delta_rebuilds_the_new_flist_and_is_small(tmp_path: Path, suffix: str) -> None:
    old, new = flist_pair(tmp_path, suffix)
    delta = make_delta(old.read_bytes(), new.read_bytes(), MAX)
    assert delta is not None
    assert apply_delta(delta, old.read_bytes(), MAX) == new.read_bytes()
    assert len(delta) < len(new.read_bytes()) / 3  # one file of sixty changed
    header, _ = read_header(delta)
    assert header.container == ("gzip" if suffix == ".flist" else "raw")


def test_a_gzip_the_recipe_does_not_reproduce_gets_no_delta(tmp_path: Path) -> None:
    old, new = flist_pair(tmp_path, ".flist")
    # the same tar deflated by another writer (a different strategy): no level of ours rebuilds it
    tar = gzip.decompress(new.read_bytes())
    packer = zlib.compressobj(9, zlib.DEFLATED, 31, 9, zlib.Z_FILTERED)
    other = packer.compress(tar) + packer.flush()
    assert gzip.decompress(other) == tar
    assert make_delta(old.read_bytes(), other, MAX) is None


def test_hostile_deltas_are_refused(tmp_path: Path) -> None:
    base = b"0123456789" * 10
    copy = b"C" + struct.pack(">QI", 95, 10)  # past the end of the 100-byte base
    with pytest.raises(DeltaInvalid, match="copies bytes"):
        apply_delta(forged_delta(base, copy), base, MAX)
    with pytest.raises(DeltaInvalid, match="bad magic"):
        apply_delta(b"PK\x03\x04" + bytes(40), base, MAX)
    with pytest.raises(DeltaInvalid, match="not this file"):
        apply_delta(forged_delta(b"another base", b""), base, MAX)
    with pytest.raises(DeltaInvalid, match="over the 1000 allowed"):
        apply_delta(forged_delta(base, b"", target_size=5000, payload_size=5000), base, 1000)
    literal = b"L" + struct.pack(">I", 4) + b"abcd"
    with pytest.raises(DeltaInvalid, match="not the 10 it names"):
        apply_delta(forged_delta(base, literal), base, MAX)  # the op stream ends early
    with pytest.raises(DeltaInvalid, match="past the 10-byte payload"):
        apply_delta(forged_delta(base, literal * 3), base, MAX)
    with pytest.raises(DeltaInvalid, match="unknown op"):
        apply_delta(forged_delta(base, b"X" + bytes(20)), base, MAX)
    with pytest.raises(DeltaInvalid, match="runs past"):
        apply_delta(forged_delta(base, b"L" + struct.pack(">I", 50) + b"short"), base, MAX)
    with pytest.raises(DeltaInvalid, match="op stream"):
        apply_delta(forged_delta(base, b"C" + struct.pack(">QI", 0, 10))[:-5], base, MAX)  # truncated xz
    with pytest.raises(DeltaInvalid, match="over the"):  # an lzma bomb: ops far beyond the payload's
        bomb = b"L" + struct.pack(">I", 10) + bytes(10) + bytes(10_000_000)
        apply_delta(forged_delta(base, bomb), base, MAX)
    with pytest.raises(DeltaInvalid, match="gzip recipe"):
        apply_delta(forged_delta(base, b"", container="gzip", gzip_head="zz", gzip_level=9), base, MAX)
    with pytest.raises(DeltaInvalid, match="header is not valid"):
        apply_delta(forged_delta(base, b"", extra="field"), base, MAX)
    good = forged_delta(base, b"C" + struct.pack(">QI", 0, 10))
    assert apply_delta(good, base, MAX) == base[:10]


def test_the_node_offers_its_kept_flists_newest_first_and_only_those(tmp_path: Path) -> None:
    folder = tmp_path / "flists"
    folder.mkdir()
    names = [f"{i:032x}" for i in range(6)]
    for at, name in enumerate(names):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (1000 + at, 1000 + at))
    (folder / "not-an-md5").write_bytes(b"x")
    (folder / ("f" * 32)).symlink_to(folder / names[0])
    offered = delta_bases(folder, names[5])
    assert [p.name for p in offered] == [names[4], names[3], names[2], names[1]]
    base = b"0123456789" * 10
    with pytest.raises(DeltaInvalid, match="did not offer"):
        rebuild_from_delta(forged_delta(base, b""), offered, MAX)
