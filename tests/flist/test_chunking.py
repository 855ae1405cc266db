"""flist/chunking.py: where files are cut (fixed and content-defined), parsed modes and tags."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
from pathlib import Path

import pytest

from zos_upgrade.flist.blocks import BLOCK_SIZE
from zos_upgrade.flist.chunking import (
    CDC,
    FIXED,
    Chunking,
    ChunkingError,
    block_lengths,
    block_spans,
    chunking_from_tags,
    data_chunks,
    data_spans,
    file_chunks,
    file_spans,
    parse_chunking,
)
from zos_upgrade.flist.model import Entry, EntryKind

MiB = 1024 * 1024


def _data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _chunks(data: bytes, chunking: Chunking = CDC) -> list[bytes]:
    return list(data_chunks(data, chunking))


def test_cdc_sizes_stay_within_min_and_max_and_cover_the_data() -> None:
    data = _data(1, 8 * MiB) + b"\0" * MiB  # a run of zeros never finds a cut: max_size cuts it
    spans = data_spans(data, CDC)
    assert spans[0][0] == 0 and sum(n for _, n in spans) == len(data)
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(spans))
    assert all(CDC.min_size <= n <= CDC.max_size for _, n in spans[:-1])
    assert 0 < spans[-1][1] <= CDC.max_size
    assert any(n == CDC.max_size for _, n in spans)  # the zeros
    average = len(data) / len(spans)
    assert CDC.avg_size / 2 < average < 2 * CDC.max_size


def test_after_a_1_mb_insertion_most_later_chunks_are_identical() -> None:
    old = _data(2, 20 * MiB)
    new = old[:100_000] + _data(3, 1_000_000) + old[100_000:]  # 1 MB: not a whole number of blocks
    before, after = _chunks(old), set(_chunks(new))
    shared = sum(len(c) for c in before if c in after)
    assert shared >= len(old) - 2 * CDC.max_size  # only the chunk(s) around the insertion differ
    # fixed blocks shift: nothing after the insertion point is shared
    fixed_after = set(_chunks(new, FIXED))
    assert sum(len(c) for c in _chunks(old, FIXED) if c in fixed_after) == 0


def test_scattered_small_edits_cost_about_one_chunk_each() -> None:
    old = bytearray(_data(4, 20 * MiB))
    new = bytearray(old)
    rng = random.Random(5)
    for _ in range(20):
        at = rng.randrange(len(new) - 4096)
        new[at:at + 4096] = rng.randbytes(4096)
    kept = set(_chunks(bytes(old)))
    changed = sum(len(c) for c in _chunks(bytes(new)) if c not in kept)
    assert changed <= 20 * 3 * CDC.max_size
    fixed_kept = set(_chunks(bytes(old), FIXED))
    assert changed < sum(len(c) for c in _chunks(bytes(new), FIXED) if c not in fixed_kept)


def test_empty_and_tiny_inputs() -> None:
    assert data_spans(b"", CDC) == [] and data_spans(b"", FIXED) == []
    assert data_spans(b"x", CDC) == [(0, 1)]
    assert data_spans(b"y" * 1000, CDC) == [(0, 1000)]  # below min_size: one chunk
    assert data_spans(b"z" * (BLOCK_SIZE + 1), FIXED) == [(0, BLOCK_SIZE), (BLOCK_SIZE, 1)]


def test_file_cuts_equal_buffer_cuts(tmp_path: Path) -> None:
    data = _data(6, 3 * MiB + 17)
    path = tmp_path / "f"
    path.write_bytes(data)
    for chunking in (FIXED, CDC):
        assert file_spans(path, len(data), chunking) == data_spans(data, chunking)
        assert list(file_chunks(path, chunking)) == _chunks(data, chunking)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_spans(empty, 0, CDC) == [] and list(file_chunks(empty, CDC)) == []


_CHILD = """
import random, sys
from zos_upgrade.flist.chunking import CDC, data_spans
data = random.Random(7).randbytes(4 * 1024 * 1024)
print(data_spans(data, CDC))
"""


def test_cut_points_are_deterministic_across_processes() -> None:
    """Same content, same cut points, in a fresh interpreter (no state, no per-process seed); pinned
    too, so a changed gear table or algorithm in a new pyfastcdc fails here instead of silently
    making nodes and releases disagree."""
    runs = {subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(runs) == 1
    spans = data_spans(_data(7, 4 * MiB), CDC)
    assert runs == {f"{spans}\n"}
    assert spans[:3] == PINNED_FIRST_SPANS


# the first cut points of random.Random(7).randbytes(4 MiB) with CDC, as measured once
PINNED_FIRST_SPANS = [(0, 111090), (111090, 67285), (178375, 86090)]


def test_block_spans_follow_the_recorded_lengths_or_the_fixed_layout() -> None:
    fixed = Entry("/f", EntryKind.FILE, 0o100644, size=BLOCK_SIZE + 5)
    assert block_spans(fixed) == [(0, BLOCK_SIZE), (BLOCK_SIZE, 5)]
    cdc = Entry("/g", EntryKind.FILE, 0o100644, size=30, lengths=(10, 15, 5))
    assert block_spans(cdc) == [(0, 10), (10, 15), (25, 5)]
    assert block_spans(Entry("/e", EntryKind.FILE, 0o100644)) == []


@pytest.mark.parametrize("size", [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE,
                                  3 * BLOCK_SIZE + 7])
def test_block_lengths_are_the_spans_lengths(size: int) -> None:
    fixed = Entry("/f", EntryKind.FILE, 0o100644, size=size)
    assert block_lengths(fixed) == [length for _, length in block_spans(fixed)]
    cdc = Entry("/g", EntryKind.FILE, 0o100644, size=30, lengths=(10, 15, 5))
    assert block_lengths(cdc) == [10, 15, 5]


def test_parse_chunking_and_tags() -> None:
    assert parse_chunking("fixed") is FIXED and parse_chunking("cdc") is CDC
    assert parse_chunking("cdc:4096:16384:65536") == Chunking("cdc", 4096, 16384, 65536)
    assert CDC.tag_value == "fastcdc2020:16384:65536:262144" and FIXED.tag_value is None
    assert chunking_from_tags({"chunking": CDC.tag_value}, "v2", "x.fl") == CDC
    assert chunking_from_tags({}, "v2", "x.fl") is FIXED
    assert chunking_from_tags({}, "v1", "x.flist") is FIXED


@pytest.mark.parametrize("text", ["", "CDC", "cdc:1", "cdc:a:b:c", "rabin", "cdc:4096:2048:65536",
                                  "cdc:100:200:300", f"cdc:4096:65536:{BLOCK_SIZE + 1}"])
def test_bad_chunking_modes_are_refused(text: str) -> None:
    with pytest.raises(ChunkingError, match="chunk"):
        parse_chunking(text)


@pytest.mark.parametrize("value", ["cdc", "fastcdc2020:1:2", "fastcdc2020:16384:65536:9999999",
                                   "fastcdc2016:16384:65536:262144", "fastcdc2020:-1:65536:262144"])
def test_bad_chunking_tags_are_refused(value: str) -> None:
    with pytest.raises(ChunkingError, match=r"x\.fl"):
        chunking_from_tags({"chunking": value}, "v2", "x.fl")


def test_a_v1_flist_with_a_cdc_tag_is_refused() -> None:
    with pytest.raises(ChunkingError, match="v1 flist records a fixed block size"):
        chunking_from_tags({"chunking": CDC.tag_value or ""}, "v1", "x.flist")
