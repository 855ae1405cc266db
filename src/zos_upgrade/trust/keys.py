"""ed25519 key files of a TUF repository: one PKCS#8 PEM file a key, in a keys folder of its own.

A key file is named ``<role>.<keyid>.pem`` so an operator can tell a root key (to be kept offline)
from an online timestamp key at a glance, and the repository finds the file of a key its root names
by the key id alone, in whichever of its folders holds it. A passphrase (from an environment
variable, never a command-line argument) encrypts the files; without one they are written with mode
0600 in clear.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from zos_upgrade import fsutil
from zos_upgrade.trust.errors import TrustRepositoryError

__all__ = ["PASSPHRASE_ENV", "KeyStore", "generate_key"]

# the environment variable holding the passphrase of the key files (optional)
PASSPHRASE_ENV = "ZOS_TRUST_PASSPHRASE"
_MAX_KEY_FILE = 64 * 1024


def generate_key() -> tuple[Ed25519PrivateKey, CryptoSigner]:
    """A new ed25519 key pair: the private key (to save) and its signer (ed25519 scheme)."""
    private = Ed25519PrivateKey.generate()
    return private, CryptoSigner(private)


class KeyStore:
    """The private keys of one repository, in one folder or several (a ceremony gathers root keys
    from separate media: ``--keys usb1 --keys usb2``); new keys are written to the first. Reads are
    lazy: only the keys a change needs are opened, so a folder holding just the online keys signs
    timestamps and nothing else."""

    def __init__(self, folder: Path | Sequence[Path], passphrase: bytes | None = None) -> None:
        self.folders: tuple[Path, ...] = (folder,) if isinstance(folder, Path) else tuple(folder)
        if not self.folders:
            raise TrustRepositoryError("no keys folder given")
        self.folder = self.folders[0]
        self._passphrase = passphrase

    @classmethod
    def from_env(cls, folder: Path | Sequence[Path]) -> KeyStore:
        """A store whose passphrase, if any, is read from ``$ZOS_TRUST_PASSPHRASE``."""
        text = os.environ.get(PASSPHRASE_ENV)
        return cls(folder, text.encode() if text else None)

    def path_of(self, role: str, keyid: str) -> Path:
        return self.folder / f"{role}.{keyid}.pem"

    def save(self, role: str, private: Ed25519PrivateKey, signer: CryptoSigner) -> Path:
        """Write ``private``, the key of ``signer``, durably with mode 0600; never overwrites a file."""
        keyid = signer.public_key.keyid
        path = self.path_of(role, keyid)
        if os.path.lexists(path):
            raise TrustRepositoryError(f"{path}: a key file already exists; refusing to overwrite it")
        encryption = BestAvailableEncryption(self._passphrase) if self._passphrase else NoEncryption()
        pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fsutil.atomic_write_bytes(path, pem, mode=0o600)
        return path

    def _file_of(self, keyid: str) -> Path | None:
        for folder in self.folders:
            if folder.is_dir():
                matches = sorted(folder.glob(f"*.{keyid}.pem"))
                if matches:
                    return matches[0]
        return None

    def has(self, keyid: str) -> bool:
        return self._file_of(keyid) is not None

    def signer(self, key: Key) -> CryptoSigner | None:
        """The signer of public ``key`` if its private key file is here, else None.

        A file that is here but unreadable, encrypted without the passphrase, or holding another key
        than its name says is an error, not a missing key: the operator must know.
        """
        path = self._file_of(key.keyid)
        if path is None:
            return None
        if not isinstance(key, SSlibKey):
            raise TrustRepositoryError(f"{path}: key {key.keyid} is a {type(key).__name__}, not a file key")
        data = fsutil.read_at_most(path, _MAX_KEY_FILE)
        if data is None:
            raise TrustRepositoryError(f"{path}: key file vanished while being read")
        if len(data) > _MAX_KEY_FILE:
            raise TrustRepositoryError(f"{path}: key file is larger than {_MAX_KEY_FILE} bytes")
        encrypted = b"ENCRYPTED PRIVATE KEY" in data
        if encrypted and not self._passphrase:
            raise TrustRepositoryError(
                f"{path}: key file is encrypted; set ${PASSPHRASE_ENV} to its passphrase"
            )
        try:
            private = load_pem_private_key(data, self._passphrase if encrypted else None)
            return CryptoSigner(private, key)
        except (ValueError, TypeError) as exc:
            raise TrustRepositoryError(
                f"{path}: not the PKCS#8 PEM private key of {key.keyid} (wrong passphrase, damaged "
                f"file, or another key): {exc}"
            ) from exc

    def signers(self, keys: Iterable[Key]) -> list[CryptoSigner]:
        """The signers of those of ``keys`` whose files are here."""
        found = []
        for key in keys:
            signer = self.signer(key)
            if signer is not None:
                found.append(signer)
        return found
