"""The node's record of what it booted and installed: the boot files under the node root (SPEC 8).

``/tmp/flist.name`` holds ``repo/name`` of the boot flist (the link's name), ``/tmp/flist.info`` its
``/light`` info, ``/tmp/bins.info`` the installed packages keyed ``repo/name``. The real bootstrap
writes them; the upgrader rewrites them after each committed upgrade. A missing or garbled file must
never crash the daemon (the original's ``MustVersion`` panicked into a crash loop): reads raise
:class:`BootFileError` naming the file and what was wrong, and :meth:`Boot.try_version` turns that
into ``0.0.0`` with a logged warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

import msgspec

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import atomic_write_bytes
from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.hub.models import FlistInfo, HubError
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.node.events import FListEvent
from zos_upgrade.node.infofile import decode_info, decode_info_map, info_document
from zos_upgrade.versions import ZERO, InvalidVersion, Version

__all__ = ["BINARIES_FILE", "FLIST_INFO_FILE", "FLIST_NAME_FILE", "Boot", "BootFileError", "BootMethod"]

log = logging.getLogger(__name__)

FLIST_NAME_FILE = "/tmp/flist.name"
FLIST_INFO_FILE = "/tmp/flist.info"
BINARIES_FILE = "/tmp/bins.info"

# an info object is a few hundred bytes, bins.info a few dozen of them: anything larger is not ours
_MAX_NAME_BYTES = 4096
_MAX_INFO_BYTES = 64 * 1024
_MAX_BINS_BYTES = 8 * 1024 * 1024


class BootFileError(ZosUpgradeError):
    """A boot file is missing where it is required, unreadable, or not in the expected format."""


class BootMethod(StrEnum):
    FLIST = "flist"  # booted by the bootstrap from an flist: the boot files exist
    OTHER = "other"  # development boots (VM + overlay...): nothing to upgrade from the hub


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise BootFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise BootFileError(f"{what} {path} is larger than {limit} bytes (expected a small JSON document)")
    return data


class Boot:
    """The boot files of the node whose root is ``root`` (``/`` on a real node)."""

    def __init__(self, root: Path | str = "/") -> None:
        self.root = Path(root)

    def _path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    @property
    def name_file(self) -> Path:
        return self._path(FLIST_NAME_FILE)

    @property
    def info_file(self) -> Path:
        return self._path(FLIST_INFO_FILE)

    @property
    def bins_file(self) -> Path:
        return self._path(BINARIES_FILE)

    # ------------------------------------------------------------------ reading

    def detect_boot_method(self) -> BootMethod:
        """``flist`` when the bootstrap left ``flist.name`` (whatever its content), else ``other``."""
        return BootMethod.FLIST if os.path.lexists(self.name_file) else BootMethod.OTHER

    def name(self) -> str:
        """``repo/name`` of the boot flist; ``""`` when ``flist.name`` does not exist.

        Raises :class:`BootFileError` when it exists but cannot be read or is not ``repo/name``.
        """
        path = self.name_file
        if not os.path.lexists(path):
            return ""
        data = _read_limited(path, _MAX_NAME_BYTES, "boot flist name file")
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise BootFileError(
                f"boot flist name file {path} is not UTF-8 text (expected 'repo/name')"
            ) from exc
        try:
            split_fqdn(text)
        except HubError as exc:
            raise BootFileError(f"boot flist name file {path}: {exc}") from exc
        return text

    def current(self) -> FListEvent:
        """The boot flist as the bootstrap (or the last upgrade) recorded it."""
        fqdn = self.name()
        if not fqdn:
            raise BootFileError(
                f"no boot flist recorded: {self.name_file} does not exist (booted by other means?)"
            )
        repo, name = split_fqdn(fqdn)
        path = self.info_file
        data = _read_limited(path, _MAX_INFO_BYTES, "boot flist info file")
        try:
            info = decode_info(data)
        except msgspec.ValidationError as exc:
            raise BootFileError(
                f"boot flist info file {path} has the wrong shape: {exc} "
                "(expected a JSON object with name, type, updated[, md5, target])"
            ) from exc
        except msgspec.DecodeError as exc:
            raise BootFileError(f"boot flist info file {path} is not valid JSON: {exc}") from exc
        if info.name != name:
            # a torn pair (crash between the two writes) or a hand edit: trust neither
            raise BootFileError(
                f"boot files disagree: {self.name_file} names {fqdn!r} but {path} describes {info.name!r}"
            )
        try:
            return FListEvent(repo, info)
        except HubError as exc:
            raise BootFileError(f"boot flist info file {path}: {exc}") from exc

    def current_bins(self) -> dict[str, RepoFList]:
        """The installed packages, keyed ``repo/name``; empty when ``bins.info`` does not exist."""
        path = self.bins_file
        if not os.path.lexists(path):
            return {}
        data = _read_limited(path, _MAX_BINS_BYTES, "installed packages file")
        try:
            infos = decode_info_map(data)
        except msgspec.ValidationError as exc:
            raise BootFileError(
                f"installed packages file {path} has the wrong shape: {exc} "
                "(expected a JSON object of 'repo/name' -> flist info)"
            ) from exc
        except msgspec.DecodeError as exc:
            raise BootFileError(f"installed packages file {path} is not valid JSON: {exc}") from exc
        bins: dict[str, RepoFList] = {}
        for key, info in infos.items():
            try:
                repo, name = split_fqdn(key)
            except HubError as exc:
                raise BootFileError(f"installed packages file {path}: key {key!r}: {exc}") from exc
            if name != info.name:
                raise BootFileError(
                    f"installed packages file {path}: key {key!r} holds the info of {info.name!r}"
                )
            bins[key] = RepoFList(repo, info)
        return bins

    def version(self) -> Version:
        """The version of the boot flist (the link's target for a symlink).

        Raises :class:`BootFileError` when the boot files are missing, garbled, or name no version.
        """
        current = self.current()
        try:
            return current.version()
        except (InvalidVersion, HubError) as exc:
            raise BootFileError(f"boot flist {current.fqdn()} (from {self.info_file}): {exc}") from exc

    def must_version(self) -> Version:
        """Same as :meth:`version` (the name of the Go API; it raises, it never panics)."""
        return self.version()

    def try_version(self) -> Version:
        """:meth:`version`, or ``0.0.0`` with a logged warning when it cannot be known."""
        try:
            return self.version()
        except BootFileError as exc:
            log.warning(
                "boot flist version unknown, assuming 0.0.0",
                extra={"root": str(self.root), "error": str(exc)},
            )
            return ZERO

    # ------------------------------------------------------------------ writing

    def set(self, event: FListEvent) -> None:
        """Record ``event`` as the boot flist: ``flist.info`` (mode 0400) first, then ``flist.name``.

        Each file is replaced atomically. A crash between the two leaves a pair that
        :meth:`current` reports as disagreeing (never a torn file); the daemon rewrites both from
        its manifest on start.
        """
        self.info_file.parent.mkdir(parents=True, exist_ok=True)
        event.commit(self.info_file, 0o400)
        atomic_write_bytes(self.name_file, event.fqdn().encode(), 0o644)

    def set_bins(self, mapping: Mapping[str, RepoFList | FlistInfo]) -> None:
        """Record the installed packages (keys ``repo/name``) atomically in ``bins.info``."""
        doc = {}
        for key, value in mapping.items():
            try:
                _, name = split_fqdn(key)
            except HubError as exc:
                raise BootFileError(f"cannot record package {key!r}: {exc}") from exc
            info = value.info if isinstance(value, RepoFList) else value
            if info.name != name:
                raise BootFileError(f"cannot record package {key!r}: its info describes {info.name!r}")
            doc[key] = info_document(info)
        self.bins_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.bins_file, msgspec.json.encode(doc), 0o644)
