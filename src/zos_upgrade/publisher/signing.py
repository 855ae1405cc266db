"""Release signatures: ed25519 over the canonical JSON of a release, and the flist hash (SPEC 7).

The signed bytes are the JSON of ``{"flist", "hash", "transaction_id", "version"}`` with sorted keys,
no spaces, UTF-8 (``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)``).
``version`` is always the version the verifier *asked for*, so a valid object replayed under another
version's name fails. ``hash`` pins the flist file, and the flist pins every block by its content:
one signature covers every byte of a release.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zos_upgrade.publisher.base import (
    BadSignature,
    HashMismatch,
    InvalidKey,
    ReplayedRelease,
    UnknownKey,
    UnsignedRelease,
    Upgrade,
)
from zos_upgrade.versions import InvalidVersion, Version, parse_version

__all__ = [
    "TrustedKeys",
    "canonical_bytes",
    "check_flist",
    "file_hash",
    "flist_hash",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_pem",
    "sign_upgrade",
]

_MAX_KEY_FILE = 64 * 1024


def flist_hash(data: bytes) -> str:
    """The ``hash`` of an flist file: blake2b-256, hex."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def file_hash(path: Path) -> str:
    """:func:`flist_hash` of a file, read in chunks."""
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_flist(upgrade: Upgrade, data: bytes, where: str) -> None:
    """Raise :class:`HashMismatch` unless ``data`` is the flist ``upgrade`` pins."""
    actual = flist_hash(data)
    if actual != upgrade.hash:
        raise HashMismatch(
            f"{where}: flist {upgrade.flist} has blake2b-256 {actual}, the release object pins {upgrade.hash}"
        )


def canonical_bytes(version: Version | str, flist: str, hash: str, transaction_id: str) -> bytes:
    """The exact bytes a release signature covers."""
    doc = {"flist": flist, "hash": hash, "transaction_id": transaction_id, "version": str(version)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public: Ed25519PublicKey) -> str:
    """A short name of a public key (blake2b-64 of its raw bytes, hex), carried in ``Upgrade.key_id``."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file's mode 0600 protects it)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _read_key_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise InvalidKey(f"{path}: cannot read key file: {exc.strerror or exc}") from exc
    if len(data) > _MAX_KEY_FILE:
        raise InvalidKey(f"{path}: key file is larger than {_MAX_KEY_FILE} bytes; expected a PEM key")
    return data


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An ed25519 private key from a PKCS#8 PEM file (as ``release keygen`` writes it)."""
    try:
        key = serialization.load_pem_private_key(_read_key_file(path), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"{path}: not an unencrypted PKCS#8 PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey(f"{path}: holds a {type(key).__name__}, expected an ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An ed25519 public key from a SubjectPublicKeyInfo PEM file (as ``release keygen`` writes it)."""
    try:
        key = serialization.load_pem_public_key(_read_key_file(path))
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"{path}: not a SubjectPublicKeyInfo PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidKey(f"{path}: holds a {type(key).__name__}, expected an ed25519 public key")
    return key


def sign_upgrade(
    version: Version, flist: str, hash: str, key: Ed25519PrivateKey, transaction_id: str = ""
) -> Upgrade:
    """A complete, signed release object for ``version``."""
    signature = key.sign(canonical_bytes(version, flist, hash, transaction_id))
    return Upgrade(
        version=str(version),
        flist=flist,
        hash=hash,
        transaction_id=transaction_id,
        signature=signature.hex(),
        key_id=key_id(key.public_key()),
    )


class TrustedKeys:
    """The public keys a node accepts release signatures from; it verifies, it does no I/O."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id(key): key for key in keys}

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, upgrade: Upgrade, version: Version, where: str) -> str:
        """Check ``upgrade`` is a release of ``version`` signed by a trusted key; return that key's id."""
        if not upgrade.signature:
            raise UnsignedRelease(f"{where}: release {version} carries no signature")
        if not upgrade.hash:
            raise UnsignedRelease(f"{where}: release {version} carries no flist hash, so nothing pins it")
        if upgrade.version:
            try:
                claimed = parse_version(upgrade.version)
            except InvalidVersion as exc:
                raise BadSignature(f"{where}: object names version {upgrade.version!r}: {exc}") from exc
            if claimed.compare(version) != 0:
                raise ReplayedRelease(
                    f"{where}: the object served as version {version} is the release of {claimed}"
                )
        try:
            signature = bytes.fromhex(upgrade.signature)
        except ValueError as exc:
            raise BadSignature(f"{where}: signature of {version} is not hex") from exc
        if len(signature) != 64:
            raise BadSignature(f"{where}: signature of {version} is {len(signature)} bytes, ed25519 uses 64")
        message = canonical_bytes(version, upgrade.flist, upgrade.hash, upgrade.transaction_id)
        if upgrade.key_id:
            key = self._keys.get(upgrade.key_id)
            if key is None:
                raise UnknownKey(
                    f"{where}: release {version} is signed by key {upgrade.key_id!r}, "
                    f"which is not among the {len(self._keys)} trusted key(s)"
                )
            candidates = [(upgrade.key_id, key)]
        else:  # objects from tools that do not name the key: any trusted key may have signed
            candidates = list(self._keys.items())
        for name, candidate in candidates:
            try:
                candidate.verify(signature, message)
            except InvalidSignature:
                continue
            return name
        raise BadSignature(
            f"{where}: signature of release {version} does not verify with "
            + (f"key {upgrade.key_id}" if upgrade.key_id else f"any of the {len(self._keys)} trusted key(s)")
        )
