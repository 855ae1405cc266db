"""The wire of a block batch: several blocks of an ``http://`` store in one answer (issue 19 item 2).

``GET <store>/batch?ids=<hex>,<hex>,...`` asks for up to :data:`MAX_BATCH_IDS` blocks (32- or
64-digit lower-case hex ids, as in the store's paths). A server that offers it (our hub, see
docs/hub-api.md) answers 200 with :data:`CONTENT_TYPE` and a ``Content-Length``, the body one frame
per id asked for, in the order asked: one byte giving the id's length, the id, a 4-byte big-endian
size, then that many stored bytes; the size :data:`ABSENT` (no bytes follow) says the server does not
hold that block. Any other server answers 404 (or 400/405/501), and the client fetches block by
block. A frame names its block so a reply that shifted, repeated or swapped blocks is caught here;
the bytes are verified against the id like any block's.
"""

from __future__ import annotations

import re

__all__ = [
    "ABSENT",
    "BATCH_NAME",
    "CONTENT_TYPE",
    "MAX_BATCH_IDS",
    "BadBatch",
    "frame_head",
    "frame_size",
    "head_bytes",
    "parse_query",
    "query",
    "split_frames",
]

BATCH_NAME = "batch"  # the path segment after the store's URL; never a block's hex name
MAX_BATCH_IDS = 64
CONTENT_TYPE = "application/vnd.zos-upgrade.block-batch"
ABSENT = 0xFFFFFFFF

_HEX_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")


class BadBatch(ValueError):
    """A batch query or frame that does not follow the wire; says what was wrong."""


def query(block_ids: list[bytes]) -> str:
    """The query string asking for ``block_ids`` (at most :data:`MAX_BATCH_IDS`)."""
    if not 0 < len(block_ids) <= MAX_BATCH_IDS:
        raise ValueError(f"a batch asks for 1 to {MAX_BATCH_IDS} blocks, not {len(block_ids)}")
    return "ids=" + ",".join(block_id.hex() for block_id in block_ids)


def parse_query(query_string: str) -> list[str]:
    """The hex ids a batch query asks for, in order; :class:`BadBatch` for anything else."""
    name, sep, value = query_string.partition("=")
    if name != "ids" or not sep or not value:
        raise BadBatch("expected the query ids=<hex>,<hex>,...")
    ids = value.split(",")
    if len(ids) > MAX_BATCH_IDS:
        raise BadBatch(f"{len(ids)} ids asked for; at most {MAX_BATCH_IDS} per batch")
    for hexid in ids:
        if not _HEX_ID.fullmatch(hexid):
            raise BadBatch(f"block id {hexid[:80]!r} is not 32 or 64 lower-case hex digits")
    return ids


def head_bytes(block_id: bytes) -> int:
    """How long the head of ``block_id``'s frame is."""
    return 1 + len(block_id) + 4


def frame_head(block_id: bytes, size: int | None) -> bytes:
    """The head of ``block_id``'s frame: its stored size follows, or None when it is not held."""
    return bytes((len(block_id),)) + block_id + (ABSENT if size is None else size).to_bytes(4, "big")


def frame_size(head: bytes, block_id: bytes, cap: int) -> int | None:
    """The size a frame ``head`` announces for ``block_id`` (None: not held); :class:`BadBatch` when
    it names another block or announces more than ``cap`` bytes."""
    if len(head) != head_bytes(block_id) or head[0] != len(block_id) or head[1:-4] != block_id:
        raise BadBatch(f"a frame for {head[1:-4].hex()[:64]!r} where block {block_id.hex()} was due")
    size = int.from_bytes(head[-4:], "big")
    if size == ABSENT:
        return None
    if size > cap:
        raise BadBatch(f"block {block_id.hex()}: {size} bytes announced, more than the {cap} allowed")
    return size


def split_frames(body: bytes, block_ids: list[bytes], cap: int) -> list[bytes | None]:
    """The stored bytes of each of ``block_ids`` (None: not held) from a whole batch answer, each
    at most ``cap`` bytes; :class:`BadBatch` when the answer does not follow the wire."""
    out: list[bytes | None] = []
    pos = 0
    for block_id in block_ids:
        end = pos + head_bytes(block_id)
        if end > len(body):
            raise BadBatch(f"the answer ends before the frame of block {block_id.hex()}")
        size = frame_size(body[pos:end], block_id, cap)
        pos = end
        if size is None:
            out.append(None)
            continue
        if pos + size > len(body):
            raise BadBatch(f"the answer ends inside the {size} bytes of block {block_id.hex()}")
        out.append(body[pos:pos + size])
        pos += size
    if pos != len(body):
        raise BadBatch(f"{len(body) - pos} bytes after the last frame")
    return out
