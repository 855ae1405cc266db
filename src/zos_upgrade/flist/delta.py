"""A delta from one flist file to the next: what a node downloads instead of the whole new file.

Pure functions, bytes in, bytes out. A delta rebuilds the new file's *payload* from the old one's:
an rfs ``.fl`` file is its own payload (a sqlite database); a v1 ``.flist`` is a gzip stream whose
payload is the inflated tar. A small change to a release changes a few pages of the database, so
the payload delta is copy ranges from the base and a few literal bytes, compressed (lzma).

A gzip file is rebuilt by deflating the payload again with the parameters recorded in the delta;
:func:`make_delta` only makes a delta when that recipe reproduces the stored file exactly, and the
node checks the rebuilt file like a whole download (md5, or TUF's length and hashes) in any case.

Wire format: ``MAGIC``, a 4-byte big-endian header length, the header (JSON, :class:`DeltaHeader`),
then the op stream compressed with lzma (xz). Ops: ``C`` + offset (8 bytes) + length (4 bytes)
copies from the base payload; ``L`` + length (4 bytes) + bytes is literal. Every length, offset and
size is checked while the delta is applied: a hostile delta raises :class:`DeltaInvalid`.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

import msgspec

from zos_upgrade.flist.model import FlistError

__all__ = ["DeltaHeader", "DeltaInvalid", "Payload", "apply_delta", "is_delta", "make_delta", "payload_of",
           "read_header"]

MAGIC = b"ZOSFLDELTA1\n"
_LEN = struct.Struct(">I")
_COPY = struct.Struct(">QI")
_MAX_HEADER = 4096
# the block the hub matches at. A sqlite page is 4 KiB, but a changed page keeps most of its bytes:
# measured on the 1 %-of-files change (benchmarks/flist_delta.py's tree, .fl / .flist delta bytes):
# 4096: 37038 / 15126, 512: 6606 / 2678, 128: 2778 / 1450, 32: 1558 / 970, 16: 1322 / 910. 32 is
# within 20 % of 16 for half the hub's work per byte.
BLOCK = 32
# what the node's caps assume of any hub's ops: each copy covers at least this many bytes
_MIN_BLOCK = 16
_GZIP_LEVELS = (6, 9, 1, 2, 3, 4, 5, 7, 8)  # ours (flist/v1/archive.py) first, then our older 9


class DeltaInvalid(FlistError):
    """A delta that cannot be applied: malformed, for another base, or asking for bytes out of range."""


class DeltaHeader(msgspec.Struct, forbid_unknown_fields=True):
    base_md5: str
    target_md5: str
    target_size: int
    payload_size: int
    container: Literal["raw", "gzip"]
    gzip_head: str = ""  # hex of the gzip member's header, byte for byte
    gzip_level: int = 0


@dataclass(frozen=True)
class Payload:
    """A file's payload and how the file is rebuilt from it (``None`` when it cannot be)."""

    container: Literal["raw", "gzip"]
    data: bytes
    gzip_head: bytes = b""
    gzip_level: int | None = None


def _gzip_head_length(data: bytes) -> int | None:
    """Length of a gzip member's header (RFC 1952), or None when it is not one we can read."""
    if len(data) < 18 or data[:3] != b"\x1f\x8b\x08":
        return None
    flags, at = data[3], 10
    if flags & 0xE0:
        return None
    if flags & 4:  # FEXTRA
        if len(data) < at + 2:
            return None
        at += 2 + int.from_bytes(data[at:at + 2], "little")
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            end = data.find(b"\0", at)
            if end < 0:
                return None
            at = end + 1
    if flags & 2:  # FHCRC
        at += 2
    return at if at < len(data) else None


def _deflate(payload: bytes, level: int) -> bytes:
    # the parameters of Python's gzip module (flist/v1/archive.py writes with it)
    packer = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)
    return packer.compress(payload) + packer.flush()


def _gzip(head: bytes, payload: bytes, level: int) -> bytes:
    trailer = struct.pack("<II", zlib.crc32(payload), len(payload) & 0xFFFFFFFF)
    return head + _deflate(payload, level) + trailer


def payload_of(data: bytes, max_payload: int, *, find_recipe: bool) -> Payload:
    """The payload of a stored flist file; for a gzip file, with the level that deflates it back to
    exactly ``data`` when ``find_recipe`` (``gzip_level`` None: no level does)."""
    head_len = _gzip_head_length(data)
    if head_len is None:
        return Payload("raw", data)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        payload = inflater.decompress(data[head_len:], max_payload + 1)
    except zlib.error as exc:
        raise DeltaInvalid(f"gzip stream does not inflate: {exc}") from exc
    if len(payload) > max_payload or not inflater.eof:
        raise DeltaInvalid(f"gzip payload is over {max_payload} bytes or truncated")
    head = data[:head_len]
    level = None
    if find_recipe and len(inflater.unused_data) == 8:  # one member, then its trailer, nothing more
        deflated = data[head_len:len(data) - 8]
        for candidate in _GZIP_LEVELS:
            if _deflate(payload, candidate) == deflated and _gzip(head, payload, candidate) == data:
                level = candidate
                break
    return Payload("gzip", payload, head, level)


def _ops(base: bytes, target: bytes) -> bytes:
    """Copy and literal ops rebuilding ``target`` from ``base``, matched on BLOCK-aligned blocks."""
    index: dict[bytes, int] = {}
    for at in range(len(base) - BLOCK, -1, -BLOCK):
        index[base[at:at + BLOCK]] = at  # the first occurrence wins
    out = bytearray()
    literal_from = 0
    copy_from, copy_len = -1, 0
    pos = 0

    def flush_literal(end: int) -> None:
        if end > literal_from:
            out.extend(b"L" + _LEN.pack(end - literal_from) + target[literal_from:end])

    def flush_copy() -> None:
        if copy_len:
            out.extend(b"C" + _COPY.pack(copy_from, copy_len))

    while pos + BLOCK <= len(target):
        block = target[pos:pos + BLOCK]
        if copy_len and base[copy_from + copy_len:copy_from + copy_len + BLOCK] == block:
            copy_len += BLOCK  # the run goes on
        else:
            found = pos if base[pos:pos + BLOCK] == block else index.get(block, -1)
            if found < 0:
                flush_copy()
                copy_len = 0
                pos += BLOCK
                continue
            if copy_len:
                flush_copy()
            else:
                flush_literal(pos)
            copy_from, copy_len = found, BLOCK
        pos += BLOCK
        literal_from = pos
    flush_copy()
    flush_literal(len(target))
    return bytes(out)


def make_delta(base: bytes, target: bytes, max_payload: int) -> bytes | None:
    """The delta from file ``base`` to file ``target``, or None when the target's container cannot be
    rebuilt byte for byte (a gzip written by another deflate) or the two are of different kinds."""
    new = payload_of(target, max_payload, find_recipe=True)
    old = payload_of(base, max_payload, find_recipe=False)
    if new.container == "gzip" and new.gzip_level is None:
        return None
    import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

    header = DeltaHeader(
        base_md5=hashlib.md5(base).hexdigest(), target_md5=hashlib.md5(target).hexdigest(),
        target_size=len(target), payload_size=len(new.data), container=new.container,
        gzip_head=new.gzip_head.hex(), gzip_level=new.gzip_level or 0,
    )
    encoded = msgspec.json.encode(header)
    return MAGIC + _LEN.pack(len(encoded)) + encoded + lzma.compress(_ops(old.data, new.data))


def is_delta(data: bytes) -> bool:
    """Whether ``data`` is a delta rather than an flist file (no flist starts with the magic)."""
    return data.startswith(MAGIC)


def read_header(delta: bytes) -> tuple[DeltaHeader, int]:
    """The delta's header and where its op stream starts; raises :class:`DeltaInvalid`."""
    if not delta.startswith(MAGIC) or len(delta) < len(MAGIC) + _LEN.size:
        raise DeltaInvalid("not an flist delta (bad magic)")
    (length,) = _LEN.unpack_from(delta, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    if length > _MAX_HEADER or start + length > len(delta):
        raise DeltaInvalid(f"delta header of {length} bytes is too long or truncated")
    try:
        header = msgspec.json.decode(delta[start:start + length], type=DeltaHeader, strict=True)
    except msgspec.DecodeError as exc:
        raise DeltaInvalid(f"delta header is not valid: {exc}") from exc
    for md5 in (header.base_md5, header.target_md5):
        if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
            raise DeltaInvalid(f"delta header md5 {md5[:40]!r} is not 32 lower-case hex digits")
    if header.target_size < 0 or header.payload_size < 0:
        raise DeltaInvalid("delta header has a negative size")
    if header.container == "gzip" and not _valid_recipe(header):
        raise DeltaInvalid("delta header's gzip recipe is not valid")
    return header, start + length


def _valid_recipe(header: DeltaHeader) -> bool:
    try:
        head = bytes.fromhex(header.gzip_head)
    except ValueError:
        return False
    # padded: a header alone has no deflate data after it, which the parser asks for
    return header.gzip_level in range(1, 10) and _gzip_head_length(head + bytes(18)) == len(head)


def apply_delta(delta: bytes, base: bytes, max_bytes: int) -> bytes:
    """The file ``delta`` rebuilds from file ``base``: at most ``max_bytes`` (payload and file).

    The caller checks the result's hashes; this only refuses what cannot be a valid delta: a base
    other than the one named, copy ranges outside the base, a payload or file over ``max_bytes``, an
    op stream that ends early or goes on past the payload.
    """
    try:
        gzip_head = None
        header, at = read_header(delta)
        if header.target_size > max_bytes or header.payload_size > max_bytes:
            raise DeltaInvalid(f"delta rebuilds {max(header.target_size, header.payload_size)} bytes, "
                               f"over the {max_bytes} allowed")
        import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

        if hashlib.md5(base).hexdigest() != header.base_md5:
            raise DeltaInvalid(f"delta is for base {header.base_md5}, not this file")
        if header.container == "gzip":
            gzip_head = bytes.fromhex(header.gzip_head)
        old = payload_of(base, max_bytes, find_recipe=False).data
        ops = _inflate_ops(delta[at:], header.payload_size)
        payload = _run(ops, old, header.payload_size)
    except (ValueError, lzma.LZMAError, struct.error) as exc:
        raise DeltaInvalid(f"delta is malformed: {exc}") from exc
    rebuilt = payload if gzip_head is None else _gzip(gzip_head, payload, header.gzip_level)
    if len(rebuilt) != header.target_size:
        raise DeltaInvalid(f"delta rebuilt {len(rebuilt)} bytes, not the {header.target_size} it names")
    return rebuilt


def _inflate_ops(packed: bytes, payload_size: int) -> bytes:
    # ops are the payload's literal bytes plus at most one copy (13 bytes) and one literal header
    # (5 bytes) per copied block: a larger op stream is not a delta of this payload
    limit = payload_size + (payload_size // _MIN_BLOCK + 2) * (2 + _COPY.size + _LEN.size)
    inflater = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    ops = inflater.decompress(packed, max_length=limit + 1)
    if len(ops) > limit:
        raise DeltaInvalid(f"delta's op stream is over the {limit} bytes its payload allows")
    if not inflater.eof or inflater.unused_data:
        raise DeltaInvalid("delta's op stream is truncated or followed by other bytes")
    return ops


def _run(ops: bytes, base: bytes, size: int) -> bytes:
    out = bytearray()
    at = 0
    while at < len(ops):
        op = ops[at:at + 1]
        if op == b"C":
            offset, length = _COPY.unpack_from(ops, at + 1)
            at += 1 + _COPY.size
            if offset + length > len(base):
                raise DeltaInvalid(
                    f"delta copies bytes {offset}-{offset + length} of a {len(base)}-byte base")
            chunk = base[offset:offset + length]
        elif op == b"L":
            (length,) = _LEN.unpack_from(ops, at + 1)
            at += 1 + _LEN.size
            chunk = ops[at:at + length]
            if len(chunk) != length:
                raise DeltaInvalid("delta's literal runs past the op stream")
            at += length
        else:
            raise DeltaInvalid(f"delta has an unknown op {op!r} at {at}")
        if len(out) + len(chunk) > size:
            raise DeltaInvalid(f"delta writes past the {size}-byte payload it names")
        out += chunk
    if len(out) != size:
        raise DeltaInvalid(f"delta rebuilt a {len(out)}-byte payload, not the {size} it names")
    return bytes(out)
