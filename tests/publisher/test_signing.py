"""Release signatures and the flist hash: every way a release object can fail to be trusted."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from zos_upgrade.publisher.base import (
    BadSignature,
    HashMismatch,
    InvalidKey,
    ReplayedRelease,
    UnknownKey,
    UnsignedRelease,
    Upgrade,
)
from zos_upgrade.publisher.signing import (
    TrustedKeys,
    canonical_bytes,
    check_flist,
    flist_hash,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
    sign_upgrade,
)
from zos_upgrade.versions import parse_version

V1 = parse_version("1.0.0")
V2 = parse_version("2.0.0")
URL = "https://hub.example/app/app-1.0.0.fl"
HASH = flist_hash(b"the flist")


def test_canonical_bytes_are_sorted_compact_json() -> None:
    assert canonical_bytes(V1, URL, HASH, "tx-1") == (
        '{"flist":"https://hub.example/app/app-1.0.0.fl","hash":"' + HASH
        + '","transaction_id":"tx-1","version":"1.0.0"}'
    ).encode()


def test_a_signed_release_verifies_and_names_its_key() -> None:
    key = generate_key()
    upgrade = sign_upgrade(V1, URL, HASH, key, "tx-1")
    assert upgrade.version == "1.0.0" and upgrade.key_id == key_id(key.public_key())
    assert len(bytes.fromhex(upgrade.signature)) == 64
    trusted = TrustedKeys([generate_key().public_key(), key.public_key()])
    assert trusted.verify(upgrade, V1, "t") == upgrade.key_id


def test_unsigned_and_unhashed_releases_are_refused() -> None:
    trusted = TrustedKeys([generate_key().public_key()])
    with pytest.raises(UnsignedRelease, match="no signature"):
        trusted.verify(Upgrade(flist=URL, hash=HASH), V1, "t")
    signed = sign_upgrade(V1, URL, HASH, generate_key())
    with pytest.raises(UnsignedRelease, match="no flist hash"):
        trusted.verify(msgspec.structs.replace(signed, hash=""), V1, "t")


def test_a_release_signed_by_an_unknown_key_is_refused() -> None:
    upgrade = sign_upgrade(V1, URL, HASH, generate_key())
    with pytest.raises(UnknownKey, match=upgrade.key_id):
        TrustedKeys([generate_key().public_key()]).verify(upgrade, V1, "t")


@pytest.mark.parametrize(
    "change",
    [
        {"flist": "https://evil.example/app.fl"},
        {"hash": flist_hash(b"other flist")},
        {"transaction_id": "forged"},
        {"signature": "00" * 64},
    ],
)
def test_any_changed_signed_field_breaks_the_signature(change: dict[str, str]) -> None:
    key = generate_key()
    upgrade = msgspec.structs.replace(sign_upgrade(V1, URL, HASH, key), **change)
    with pytest.raises(BadSignature, match="does not verify"):
        TrustedKeys([key.public_key()]).verify(upgrade, V1, "t")


def test_a_release_replayed_as_another_version_is_refused() -> None:
    key = generate_key()
    trusted = TrustedKeys([key.public_key()])
    old = sign_upgrade(V1, URL, HASH, key)
    with pytest.raises(ReplayedRelease, match=r"release of 1\.0\.0"):
        trusted.verify(old, V2, "t")
    # stripping the version field does not help: the verifier signs over the version it asked for
    with pytest.raises(BadSignature, match="does not verify"):
        trusted.verify(msgspec.structs.replace(old, version=""), V2, "t")


def test_an_object_without_key_id_is_tried_against_every_trusted_key() -> None:
    key = generate_key()
    upgrade = msgspec.structs.replace(sign_upgrade(V1, URL, HASH, key), key_id="")
    assert TrustedKeys([generate_key().public_key(), key.public_key()]).verify(upgrade, V1, "t") == key_id(
        key.public_key()
    )
    with pytest.raises(BadSignature, match="any of the 1 trusted"):
        TrustedKeys([generate_key().public_key()]).verify(upgrade, V1, "t")


@pytest.mark.parametrize("signature", ["zz" * 64, "abc", "00" * 32])
def test_a_malformed_signature_is_a_bad_signature(signature: str) -> None:
    key = generate_key()
    upgrade = msgspec.structs.replace(sign_upgrade(V1, URL, HASH, key), signature=signature)
    with pytest.raises(BadSignature):
        TrustedKeys([key.public_key()]).verify(upgrade, V1, "t")


def test_flist_bytes_must_match_the_pinned_hash() -> None:
    upgrade = Upgrade(flist=URL, hash=HASH)
    check_flist(upgrade, b"the flist", "t")
    with pytest.raises(HashMismatch, match=HASH):
        check_flist(upgrade, b"the flist, tampered", "t")


def test_keys_round_trip_through_pem_files(tmp_path: Path) -> None:
    key = generate_key()
    (tmp_path / "k.key").write_bytes(private_key_pem(key))
    (tmp_path / "k.pub").write_bytes(public_key_pem(key.public_key()))
    assert key_id(load_private_key(tmp_path / "k.key").public_key()) == key_id(key.public_key())
    assert key_id(load_public_key(tmp_path / "k.pub")) == key_id(key.public_key())


def test_bad_key_files_are_refused_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "garbage").write_bytes(b"not a key")
    (tmp_path / "big").write_bytes(b"x" * 100_000)
    x25519 = X25519PrivateKey.generate()
    (tmp_path / "x.key").write_bytes(
        x25519.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "x.pub").write_bytes(
        x25519.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "ed.pub").write_bytes(public_key_pem(generate_key().public_key()))
    for name, loader, message in [
        ("garbage", load_private_key, "not an unencrypted PKCS#8 PEM private key"),
        ("garbage", load_public_key, "not a SubjectPublicKeyInfo PEM public key"),
        ("big", load_private_key, "larger than"),
        ("missing", load_public_key, "cannot read key file"),
        ("x.key", load_private_key, "expected an ed25519 private key"),
        ("x.pub", load_public_key, "expected an ed25519 public key"),
        ("ed.pub", load_private_key, "not an unencrypted PKCS#8"),
    ]:
        with pytest.raises(InvalidKey, match=message) as caught:
            loader(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value)


_KEY = generate_key()


@given(
    flist=st.text(max_size=200).map(lambda s: "https://hub.example/" + s),
    transaction_id=st.text(max_size=100),
    field=st.sampled_from(["flist", "transaction_id", "hash"]),
    tweak=st.text(min_size=1, max_size=5),
)
def test_any_release_round_trips_and_any_change_breaks_it(
    flist: str, transaction_id: str, field: str, tweak: str
) -> None:
    trusted = TrustedKeys([_KEY.public_key()])
    upgrade = sign_upgrade(V1, flist, HASH, _KEY, transaction_id)
    # what a node receives is the JSON the tree stores: the round trip must keep the signature valid
    received = msgspec.json.decode(msgspec.json.encode(upgrade), type=Upgrade)
    assert trusted.verify(received, V1, "t") == upgrade.key_id
    changed = msgspec.structs.replace(received, **{field: getattr(received, field) + tweak})
    with pytest.raises(BadSignature):
        trusted.verify(changed, V1, "t")
