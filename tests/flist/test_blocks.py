"""The two block pipelines: round trips, and every way a stored block can lie."""

from __future__ import annotations

import hashlib
import struct

import cramjam
import pytest
import xxtea
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from zos_upgrade.flist.blocks import (
    BLOCK_SIZE,
    BlockCorrupt,
    Sealer,
    block_id_matches,
    decrypt_block,
    decrypt_block_v1,
    decrypt_block_v2,
    encrypt_block,
    encrypt_block_v1,
    encrypt_block_v2,
)
from zos_upgrade.flist.model import BlockRef

PIPELINES = [("v1", 16), ("v2", 32)]


def _blake(data: bytes, size: int) -> bytes:
    return hashlib.blake2b(data, digest_size=size).digest()


@pytest.mark.parametrize(("fmt", "size"), PIPELINES)
@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 7, 8, 1000, BLOCK_SIZE - 1, BLOCK_SIZE])
def test_round_trip_and_hash_sizes(fmt: str, size: int, length: int) -> None:
    plain = bytes((i * 31 + 7) & 0xFF for i in range(length))
    ref, stored = encrypt_block(plain, fmt)  # type: ignore[arg-type]
    assert len(ref.id) == size and len(ref.key) == size
    assert ref.key == _blake(plain, size)
    assert ref.id == _blake(stored, size)
    assert block_id_matches(ref.id, stored)
    assert decrypt_block(ref, stored) == plain


@given(st.binary(max_size=4096))
def test_round_trip_any_bytes(plain: bytes) -> None:
    for encrypt, decrypt in ((encrypt_block_v1, decrypt_block_v1), (encrypt_block_v2, decrypt_block_v2)):
        ref, stored = encrypt(plain)
        assert decrypt(ref, stored) == plain


@pytest.mark.parametrize(("fmt", "size"), PIPELINES)
def test_same_content_same_block(fmt: str, size: int) -> None:
    assert encrypt_block(b"x" * 5000, fmt) == encrypt_block(b"x" * 5000, fmt)  # type: ignore[arg-type]
    assert encrypt_block(b"x" * 5000, fmt)[0] != encrypt_block(b"y" * 5000, fmt)[0]  # type: ignore[arg-type]


def test_v1_stored_bytes_follow_the_length_word_framing() -> None:
    plain = b"hello flist\n"
    ref, stored = encrypt_block_v1(plain)
    framed = xxtea.decrypt(stored, ref.key, padding=False)
    compressed = bytes(cramjam.snappy.compress_raw(plain))
    assert struct.unpack("<I", framed[-4:])[0] == len(compressed)
    assert framed[: len(compressed)] == compressed
    assert len(stored) % 4 == 0


def test_v2_stored_bytes_are_aes_gcm_of_snappy() -> None:
    plain = b"abc" * 1000
    ref, stored = encrypt_block_v2(plain)
    compressed = AESGCM(ref.key).decrypt(ref.key[:12], stored, None)
    assert bytes(cramjam.snappy.decompress_raw(compressed)) == plain


@pytest.mark.parametrize(("fmt", "size"), PIPELINES)
def test_flipped_bit_is_an_id_mismatch(fmt: str, size: int) -> None:
    ref, stored = encrypt_block(b"payload" * 100, fmt)  # type: ignore[arg-type]
    bad = bytearray(stored)
    bad[len(bad) // 2] ^= 1
    with pytest.raises(BlockCorrupt, match=ref.id.hex()) as info:
        decrypt_block(ref, bytes(bad))
    assert "hash to" in str(info.value)


@pytest.mark.parametrize(("fmt", "size"), PIPELINES)
def test_truncated_block(fmt: str, size: int) -> None:
    ref, stored = encrypt_block(b"payload" * 100, fmt)  # type: ignore[arg-type]
    with pytest.raises(BlockCorrupt):
        decrypt_block(ref, stored[:-4])
    # even if the id is recomputed to fit, the truncated bytes cannot decrypt to the key's content
    short = stored[:-4]
    with pytest.raises(BlockCorrupt):
        decrypt_block(BlockRef(_blake(short, size), ref.key), short)


@pytest.mark.parametrize(("fmt", "size"), PIPELINES)
def test_wrong_key_is_refused(fmt: str, size: int) -> None:
    ref, stored = encrypt_block(b"secret content" * 50, fmt)  # type: ignore[arg-type]
    other, _ = encrypt_block(b"other content" * 50, fmt)  # type: ignore[arg-type]
    with pytest.raises(BlockCorrupt, match=ref.id.hex()):
        decrypt_block(BlockRef(ref.id, other.key), stored)


@pytest.mark.parametrize(("fmt", "size"), PIPELINES)
def test_content_that_does_not_match_its_key(fmt: str, size: int) -> None:
    # a store that encrypted different content under the key of ours: decrypts, but hashes wrong
    key = _blake(b"the content the flist promised", size)
    compressed = bytes(cramjam.snappy.compress_raw(b"something else entirely"))
    if fmt == "v1":
        framed = compressed + b"\0" * (-len(compressed) % 4) + struct.pack("<I", len(compressed))
        stored = xxtea.encrypt(framed, key, padding=False)
    else:
        stored = AESGCM(key).encrypt(key[:12], compressed, None)
    with pytest.raises(BlockCorrupt, match="does not match its key"):
        decrypt_block(BlockRef(_blake(stored, size), key), stored)
    # materialize skips that check: the id pins these exact bytes, so what they decrypt to is what the
    # flist's publisher packed (a packer that recorded a wrong key; `flist verify` reports it)
    unchecked = decrypt_block(BlockRef(_blake(stored, size), key), stored, check_key=False)
    assert unchecked == b"something else entirely"


@pytest.mark.parametrize(("fmt", "size"), PIPELINES)
def test_without_the_key_check_the_id_is_still_checked(fmt: str, size: int) -> None:
    ref, stored = encrypt_block(b"payload" * 300, fmt)  # type: ignore[arg-type]
    assert decrypt_block(ref, stored, check_key=False) == b"payload" * 300
    flipped = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(BlockCorrupt, match="not to the block id"):
        decrypt_block(ref, flipped, check_key=False)


def _bomb() -> bytes:
    """Raw snappy whose header declares 4 MiB: one literal then copies, tiny on the wire."""
    declared = 4 * 1024 * 1024
    varint = bytearray()
    value = declared
    while value >= 0x80:
        varint.append((value & 0x7F) | 0x80)
        value >>= 7
    varint.append(value)
    return bytes(varint) + b"\x00a" + b"\xfe\x01\x00" * 10


@pytest.mark.parametrize(("fmt", "size"), PIPELINES)
def test_decompression_bomb_is_refused_before_inflating(fmt: str, size: int) -> None:
    key = _blake(b"anything", size)
    compressed = _bomb()
    if fmt == "v1":
        framed = compressed + b"\0" * (-len(compressed) % 4) + struct.pack("<I", len(compressed))
        stored = xxtea.encrypt(framed, key, padding=False)
    else:
        stored = AESGCM(key).encrypt(key[:12], compressed, None)
    with pytest.raises(BlockCorrupt, match="inflates to 4194304 bytes"):
        decrypt_block(BlockRef(_blake(stored, size), key), stored)


def test_v1_bad_length_word() -> None:
    key = _blake(b"k", 16)
    framed = b"\x01\x02\x03\x04" + struct.pack("<I", 4000)
    stored = xxtea.encrypt(framed, key, padding=False)
    with pytest.raises(BlockCorrupt, match="length word"):
        decrypt_block_v1(BlockRef(_blake(stored, 16), key), stored)


def test_v1_misaligned_block() -> None:
    stored = b"\x00" * 13
    with pytest.raises(BlockCorrupt, match="multiple of 4"):
        decrypt_block_v1(BlockRef(_blake(stored, 16), _blake(b"", 16)), stored)


def test_dispatch_refuses_unknown_id_sizes_and_formats() -> None:
    with pytest.raises(BlockCorrupt, match="neither v1"):
        decrypt_block(BlockRef(b"\x00" * 20, b"\x00" * 20), b"data")
    with pytest.raises(ValueError, match="unknown flist format"):
        encrypt_block(b"x", "v3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most"):
        encrypt_block_v2(b"\x00" * (BLOCK_SIZE + 1))


def test_cross_format_refs_are_refused() -> None:
    ref, stored = encrypt_block_v1(b"v1 content")
    with pytest.raises(BlockCorrupt, match="32-byte id"):
        decrypt_block_v2(ref, stored)


def test_block_id_matches() -> None:
    ref, stored = encrypt_block_v2(b"cache me")
    assert block_id_matches(ref.id, stored)
    assert not block_id_matches(ref.id, stored + b"x")
    assert not block_id_matches(ref.id[:20], stored)


# --- Sealer: the packer's per-thread encoder, which must give encrypt_block's bytes exactly -----------


def _sealer_inputs() -> list[bytes]:
    import random

    rng = random.Random(19)
    text = b"".join(b"line %d of a text file that compresses well\n" % i for i in range(20000))
    return [b"", b"\0", b"abc", b"abcd", b"abcde", bytes(BLOCK_SIZE), rng.randbytes(BLOCK_SIZE),
            rng.randbytes(BLOCK_SIZE - 1), text[:BLOCK_SIZE], text[:1001], rng.randbytes(70_000)]


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_sealer_gives_encrypt_blocks_bytes_from_a_reused_buffer(fmt: str) -> None:
    sealer = Sealer(fmt)  # type: ignore[arg-type]
    buffer = bytearray(BLOCK_SIZE)
    # big blocks before small ones, so each one is read over what a longer one left in the buffers
    for plain in sorted(_sealer_inputs(), key=len, reverse=True) * 2:
        buffer[:len(plain)] = plain
        ref, stored = sealer.seal(memoryview(buffer)[:len(plain)])
        assert (ref, stored) == encrypt_block(plain, fmt)  # type: ignore[arg-type]
        assert isinstance(stored, bytes)
        assert decrypt_block(ref, stored) == plain


def test_sealer_refuses_oversized_chunks_and_unknown_formats() -> None:
    with pytest.raises(ValueError, match="at most"):
        Sealer("v1").seal(bytes(BLOCK_SIZE + 1))
    with pytest.raises(ValueError, match="unknown flist format"):
        Sealer("v3")  # type: ignore[arg-type]
