"""Where a file is cut into blocks: fixed 512 KiB blocks (rfs, 0-flist) or content-defined chunks.

Every flist rfs or 0-flist can mount has **fixed** blocks: block ``i`` of a file holds bytes
``i * BLOCK_SIZE`` up to the next multiple (rfs's FUSE read computes ``offset / CHUNK_SIZE``), so an
edit changes its whole block and an insertion changes every block after it. A v2 flist packed with
``--chunking cdc`` cuts files where their content says (FastCDC 2020, the ``pyfastcdc`` package): an
edit changes the chunk or two around it, and after an insertion the cut points fall back in step
with the old ones, so an upgrade fetches about what changed. Such an flist says so in its tag table
(``chunking = fastcdc2020:MIN:AVG:MAX``), records each block's plain length (the ``size`` column of
its ``block`` table) and **cannot be mounted by rfs**: it is meant for zos-upgrade nodes only.

The same content cut with the same parameters gives the same cut points on every run and machine
(the gear table is FastCDC's fixed default, seed 0), which is what lets a node chunk its installed
files the way the release was chunked (:func:`file_chunks`) and compare block keys.

One module owns this so no other one assumes a block length: :func:`block_spans` gives the
(offset, length) of every block of an entry whatever its flist's chunking.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from zos_upgrade.flist.model import BLOCK_SIZE, Entry, FlistError

__all__ = [
    "CDC",
    "CHUNKING_TAG",
    "FIXED",
    "Chunking",
    "ChunkingError",
    "block_lengths",
    "block_spans",
    "chunking_from_tags",
    "chunking_of",
    "data_chunks",
    "data_spans",
    "file_chunks",
    "file_spans",
    "parse_chunking",
]

CHUNKING_TAG = "chunking"
_ALGORITHM = "fastcdc2020"
_TAG_VALUE = re.compile(rf"{_ALGORITHM}:([0-9]{{1,8}}):([0-9]{{1,8}}):([0-9]{{1,8}})")
_CLI_VALUE = re.compile(r"cdc:([0-9]{1,8}):([0-9]{1,8}):([0-9]{1,8})")
_MIN_CDC = 1024  # smaller chunks cost more in per-block overhead than they can save in bytes


class ChunkingError(FlistError):
    """A chunking mode or an flist's chunking tag is unknown, malformed or not allowed here."""


@dataclass(frozen=True, slots=True)
class Chunking:
    """How files are cut: ``fixed`` (every block BLOCK_SIZE, the last shorter) or ``cdc`` (FastCDC
    with chunks of ``min_size`` to ``max_size`` bytes, ``avg_size`` as its target; only the last
    chunk of a file may be shorter than ``min_size``)."""

    kind: Literal["fixed", "cdc"]
    min_size: int = BLOCK_SIZE
    avg_size: int = BLOCK_SIZE
    max_size: int = BLOCK_SIZE

    def __post_init__(self) -> None:
        if self.kind == "fixed":
            if (self.min_size, self.avg_size, self.max_size) != (BLOCK_SIZE,) * 3:
                raise ChunkingError(f"fixed chunking has {BLOCK_SIZE}-byte blocks, not "
                                    f"{self.min_size}/{self.avg_size}/{self.max_size}")
            return
        if self.kind != "cdc":
            raise ChunkingError(f"unknown chunking {self.kind!r}: expected 'fixed' or 'cdc'")
        # every block goes through the block pipeline, which holds at most BLOCK_SIZE plain bytes
        if not _MIN_CDC <= self.min_size <= self.avg_size <= self.max_size <= BLOCK_SIZE:
            raise ChunkingError(
                f"cdc chunk sizes {self.min_size}/{self.avg_size}/{self.max_size} (min/avg/max): "
                f"expected {_MIN_CDC} <= min <= avg <= max <= {BLOCK_SIZE}"
            )

    @property
    def tag_value(self) -> str | None:
        """What the flist's ``chunking`` tag says (None: no tag, the fixed default)."""
        if self.kind == "fixed":
            return None
        return f"{_ALGORITHM}:{self.min_size}:{self.avg_size}:{self.max_size}"


FIXED = Chunking("fixed")
# chosen by measurement (BENCHMARKS.md, "Content-defined chunking"): casync's own defaults
CDC = Chunking("cdc", 16 * 1024, 64 * 1024, 256 * 1024)


def parse_chunking(text: str) -> Chunking:
    """A ``--chunking`` value: ``fixed``, ``cdc`` (the default sizes) or ``cdc:MIN:AVG:MAX`` (bytes)."""
    if text == "fixed":
        return FIXED
    if text == "cdc":
        return CDC
    match = _CLI_VALUE.fullmatch(text)
    if match is None:
        raise ChunkingError(f"chunking {text!r}: expected 'fixed', 'cdc' or 'cdc:MIN:AVG:MAX' (bytes)")
    low, avg, high = (int(g) for g in match.groups())
    return Chunking("cdc", low, avg, high)


def chunking_from_tags(tags: Mapping[str, str], fmt: Literal["v1", "v2"], source: str) -> Chunking:
    """The chunking an flist's tags declare; v1 flists (and untagged v2 ones) have fixed blocks."""
    value = tags.get(CHUNKING_TAG)
    if value is None or value == "fixed":
        return FIXED
    if fmt != "v2":
        raise ChunkingError(f"{source}: a v1 flist records a fixed block size; its {CHUNKING_TAG!r} "
                            f"metadata {value!r} is refused (content-defined chunking is v2 only)")
    match = _TAG_VALUE.fullmatch(value)
    if match is None:
        raise ChunkingError(f"{source}: tag {CHUNKING_TAG}={value!r} is not one this node knows: "
                            f"expected 'fixed' or '{_ALGORITHM}:MIN:AVG:MAX'")
    low, avg, high = (int(g) for g in match.groups())
    try:
        return Chunking("cdc", low, avg, high)
    except ChunkingError as exc:
        raise ChunkingError(f"{source}: tag {CHUNKING_TAG}={value!r}: {exc}") from exc


class _Tagged(Protocol):
    """What :func:`chunking_of` needs of an open flist (a FlistReader; named structurally so this
    module does not import the reader, which imports it)."""

    @property
    def format(self) -> Literal["v1", "v2"]: ...

    @property
    def path(self) -> Path: ...

    def tags(self) -> dict[str, str]: ...


def chunking_of(reader: _Tagged) -> Chunking:
    """How the files of an open flist were cut (its ``chunking`` tag; fixed without one)."""
    return chunking_from_tags(reader.tags(), reader.format, str(reader.path))


# --- cutting ---------------------------------------------------------------------------------------


def _cutter(chunking: Chunking) -> object:
    # the compiled core, never pyfastcdc's silent pure-Python fallback (600x slower, measured)
    from pyfastcdc.cy import FastCDC

    # a new instance per call: one is not safe to share between threads
    return FastCDC(chunking.avg_size, min_size=chunking.min_size, max_size=chunking.max_size)


def _cdc_spans(buf: bytes | memoryview | mmap.mmap, chunking: Chunking) -> list[tuple[int, int]]:
    cutter = _cutter(chunking)
    # the view is released before returning (the chunks' own views die with the comprehension), so
    # an mmap behind it can be closed
    with memoryview(buf) as view:
        return [(c.offset, c.length) for c in cutter.cut_buf(view)]  # type: ignore[attr-defined]


def _fixed_spans(size: int) -> list[tuple[int, int]]:
    return [(offset, min(BLOCK_SIZE, size - offset)) for offset in range(0, size, BLOCK_SIZE)]


def data_spans(data: bytes | memoryview, chunking: Chunking) -> list[tuple[int, int]]:
    """(offset, length) of each block ``data`` is cut into; empty data has none."""
    if chunking.kind == "fixed" or not data:
        return _fixed_spans(len(data))
    return _cdc_spans(data, chunking)


def file_spans(path: Path, size: int, chunking: Chunking) -> list[tuple[int, int]]:
    """(offset, length) of each block of the ``size``-byte file ``path`` (fixed: no read at all)."""
    if chunking.kind == "fixed" or size == 0:
        return _fixed_spans(size)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as view:
            return _cdc_spans(view, chunking)
    finally:
        os.close(fd)


def data_chunks(data: bytes, chunking: Chunking) -> Iterator[bytes]:
    """The plain blocks ``data`` is cut into."""
    for offset, length in data_spans(data, chunking):
        yield data[offset:offset + length]


def file_chunks(path: Path, chunking: Chunking) -> Iterator[bytes]:
    """The plain blocks of the file at ``path``, cut as a flist of ``chunking`` cuts it."""
    with open(path, "rb") as handle:
        if chunking.kind == "fixed":
            while chunk := handle.read(BLOCK_SIZE):
                yield chunk
            return
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(handle.fileno(), size, prot=mmap.PROT_READ) as view:
            for offset, length in _cdc_spans(view, chunking):
                yield view[offset:offset + length]


# --- an entry's blocks ------------------------------------------------------------------------------


def block_lengths(entry: Entry) -> list[int]:
    """The plain length of each of ``entry``'s blocks, in order: ``block_spans``' lengths, built
    without the offsets (the plan reads every file's, for every flist it opens)."""
    if entry.lengths:
        return list(entry.lengths)
    full, rest = divmod(entry.size, BLOCK_SIZE)
    return [BLOCK_SIZE] * full + ([rest] if rest else [])


def block_spans(entry: Entry) -> list[tuple[int, int]]:
    """(offset, length) in the file of each of ``entry``'s blocks, in order, for either chunking.

    A content-defined flist records each length (``Entry.lengths``, checked by the reader to add up
    to the size); a fixed one implies them."""
    if entry.lengths:
        spans, offset = [], 0
        for length in entry.lengths:
            spans.append((offset, length))
            offset += length
        return spans
    return _fixed_spans(entry.size)
