"""TrustedRepo: what the node believes about one TUF repository (a hub repo or a release tree).

Every trust decision is python-tuf ngclient's (``tuf.ngclient.Updater``): this module only feeds
it (the pinned root, the cache folder, our fetcher, the clock), reads the targets it verified, and
maps its exceptions onto the typed errors of :mod:`zos_upgrade.trust.errors`, each named after the
attack it stops. It is synchronous, as ngclient is: the node calls it in ``asyncio.to_thread``.

A fresh ``Updater`` per :meth:`TrustedRepo.refresh` (ngclient allows one refresh per instance);
the cache folder (``<state_dir>/trust/<repo>/``) carries what was verified from one to the next, so
an older version replayed later is a rollback, and a poll where nothing changed downloads almost
nothing (the fetcher's conditional request for ``timestamp.json``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tuf.api import exceptions
from tuf.api._payload import Root, TargetFile  # tuf.api.metadata re-exports them without __all__
from tuf.api.metadata import Metadata
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from zos_upgrade import fsutil
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.flist.delta import is_delta
from zos_upgrade.flist.delta_files import delta_bases, rebuild_from_delta
from zos_upgrade.net import MAX_FLIST_BYTES
from zos_upgrade.trust.errors import (
    EndlessData,
    ForgedMetadata,
    FreezeAttack,
    MetadataUnavailable,
    MixAndMatch,
    RollbackAttack,
    SlowRetrieval,
    TargetMismatch,
    TrustConfigError,
    TrustError,
    UnknownTarget,
    UntrustedRelease,
)
from zos_upgrade.trust.layout import TOP_LEVEL_ROLES, ZosTarget, read_custom, validate_target_path
from zos_upgrade.trust.nodestate import TrustStatus, load_status, save_status
from zos_upgrade.trust.view import TrustView, resolve_link

__all__ = ["Clock", "MetadataUnavailable", "TrustedRepo", "TrustedTarget", "load_pinned_root", "utcnow"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MAX_ROOT_BYTES = 512_000  # ngclient's own cap for a root file


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TrustedTarget:
    """One target of the verified targets metadata, with its zos custom field read."""

    path: str
    info: TargetFile
    zos: ZosTarget

    @property
    def sha256(self) -> str:
        return self.info.hashes.get("sha256", "")

    @property
    def length(self) -> int:
        return self.info.length

    @property
    def hashes(self) -> dict[str, str]:
        return dict(self.info.hashes)


def load_pinned_root(path: Path) -> bytes:
    """The pinned root's bytes, checked to be a TUF root signed by its own threshold."""
    try:
        data = fsutil.read_at_most(path, MAX_ROOT_BYTES)
    except OSError as exc:
        raise TrustConfigError(f"pinned root {path} cannot be read: {exc}") from exc
    if data is None:
        raise TrustConfigError(f"pinned root {path} does not exist (the [trust] root file of the followed "
                               "repository: copy it there from the release engineers)")
    if len(data) > MAX_ROOT_BYTES:
        raise TrustConfigError(f"pinned root {path} is larger than {MAX_ROOT_BYTES} bytes")
    try:
        md = Metadata[Root].from_bytes(data)
        if not isinstance(md.signed, Root):
            raise TrustConfigError(f"pinned root {path} is {md.signed.type} metadata, not a root")
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except TrustConfigError:
        raise
    except Exception as exc:  # a DeserializationError, UnsignedMetadataError, ValueError...
        raise TrustConfigError(
            f"pinned root {path} is not a TUF root metadata file signed by its own keys: "
            f"{type(exc).__name__}: {exc}") from exc
    return data


class TrustedRepo:
    """The node's view of one TUF repository, kept in ``metadata_dir`` and refreshed on demand."""

    def __init__(self, metadata_dir: Path, metadata_url: str, targets_url: str, pinned_root: Path,
                 fetcher: FetcherInterface, *, clock: Clock = utcnow, name: str = "",
                 status_file: Path | None = None) -> None:
        self.metadata_dir = Path(metadata_dir)
        self.metadata_url = metadata_url
        self.targets_url = targets_url
        self.pinned_root = Path(pinned_root)
        self.fetcher = fetcher
        self.clock = clock
        self.name = name or self.metadata_dir.name
        self.status_file = status_file or self.metadata_dir.with_name(self.metadata_dir.name + ".status.json")
        self._updater: Updater | None = None

    # -- refresh ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Load new metadata (root rotations, timestamp, snapshot, targets) or raise the typed error."""
        at = self.clock()
        try:
            updater = self._new_updater()
            # ngclient's expiry checks read TrustedMetadataSet.reference_time (set once, in its
            # constructor): a fresh Updater per refresh gets the injected clock's time here
            updater._trusted_set.reference_time = at
            try:
                updater.refresh()
            except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
                raise self._mapped(exc, updater, "metadata refresh") from exc
            except OSError as exc:
                raise TrustError(f"{self.name}: the metadata cache {self.metadata_dir} cannot be "
                                 f"written: {exc}") from exc
        except TrustError as exc:
            self._updater = None
            self._record(at, updater=None, error=exc)
            raise
        self._updater = updater
        self._record(at, updater=updater, error=None)

    def _new_updater(self) -> Updater:
        bootstrap: bytes | None = None
        if not (self.metadata_dir / "root.json").exists():
            # first use: the pinned root is the trust anchor; ngclient caches it as root_history/N
            bootstrap = load_pinned_root(self.pinned_root)
            self.metadata_dir.mkdir(parents=True, exist_ok=True)
        try:
            return Updater(str(self.metadata_dir), self.metadata_url, None, self.targets_url,
                           self.fetcher, UpdaterConfig(), bootstrap=bootstrap)
        except (exceptions.RepositoryError, OSError, ValueError) as exc:
            raise TrustConfigError(
                f"{self.name}: the cached root in {self.metadata_dir} is unusable ({type(exc).__name__}: "
                f"{exc}); remove that folder to start again from the pinned root {self.pinned_root}"
            ) from exc

    # -- targets ------------------------------------------------------------------------------
    def _refreshed(self) -> Updater:
        if self._updater is None:
            raise TrustError(f"{self.name}: refresh() must succeed before targets are read")
        return self._updater

    def target(self, path: str) -> TrustedTarget:
        """The signed target ``path``, or :class:`UnknownTarget`."""
        validate_target_path(path)
        info = self._refreshed().get_targetinfo(path)
        if info is None:
            raise UnknownTarget(
                f"{self.name}: {path!r} is not a target of the signed targets metadata "
                f"(v{self.versions().get('targets', '?')}): nobody signed it [{UnknownTarget.attack}]")
        return _trusted(info)

    def resolve_link(self, name: str) -> TrustedTarget:
        """The release a signed link (or channel) names (:func:`zos_upgrade.trust.view.resolve_link`)."""
        return resolve_link(name, self.target, self.name)

    def releases(self) -> list[TrustedTarget]:
        """Every signed release (kind ``flist`` or ``release``), by path; links left out."""
        targets = self._refreshed()._trusted_set.targets.targets  # the verified top-level targets
        out = []
        for path in sorted(targets):
            try:
                trusted = _trusted(targets[path])
            except TrustError:
                continue  # a target that is not ours (no zos field) is nothing the node installs
            if trusted.zos.kind in ("flist", "release"):
                out.append(trusted)
        return out

    def view(self) -> TrustView:
        """What the last refresh verified, as plain data (the refresh child sends it to the daemon)."""
        updater = self._refreshed()
        targets = {path: {"length": info.length, "hashes": dict(info.hashes),
                          "custom": info.unrecognized_fields.get("custom", {})}
                   for path, info in updater._trusted_set.targets.targets.items()}
        return TrustView(self.name, targets, _roles(updater))

    def versions(self) -> dict[str, int]:
        """Each top-level role's trusted version (what ``verified_by`` and ``status`` show)."""
        if self._updater is None:
            return {}
        trusted = self._updater._trusted_set
        return {role: trusted[role].version for role in TOP_LEVEL_ROLES if role in trusted}

    # -- downloads ----------------------------------------------------------------------------
    def download(self, target: TrustedTarget, into_dir: Path) -> tuple[Path, str]:
        """The target's bytes, checked against its signed length and hashes, as ``into_dir/<md5>``.

        Hub mode (kind ``flist``): ngclient downloads ``<targets_url>/<sha256>.<path>``. Publisher
        mode (kind ``release``): the signed ``flist`` URL, checked with the same ``TargetFile``.
        """
        updater = self._refreshed()
        into_dir.mkdir(parents=True, exist_ok=True)
        temp = fsutil.temp_sibling(into_dir / target.path)
        try:
            if target.zos.kind == "release":
                assert target.zos.flist is not None
                with self.fetcher.download_file(target.zos.flist, target.length) as fileobj:
                    target.info.verify_length_and_hashes(fileobj)
                    fileobj.seek(0)
                    with open(temp, "wb") as out:  # streamed: a release's flist may be large
                        shutil.copyfileobj(fileobj, out)
            elif not self._from_delta(target, into_dir, temp):
                updater.download_target(target.info, str(temp))
            md5 = fsutil.file_md5(temp)
            if target.zos.md5 and md5 != target.zos.md5:
                raise TargetMismatch(f"{self.name}: {target.path!r} has the signed sha256 but md5 {md5}, "
                                     f"not the signed {target.zos.md5} [{TargetMismatch.attack}]")
            path = into_dir / md5
            _durable(temp, path)
            return path, md5
        except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
            raise self._mapped(exc, updater, f"download of {target.path!r}", target=True) from exc
        finally:
            temp.unlink(missing_ok=True)

    def _from_delta(self, target: TrustedTarget, into_dir: Path, temp: Path) -> bool:
        """Write ``temp`` from the target's URL asked with ``?delta-from=`` the kept flists of
        ``into_dir``: a delta, rebuilt, or the whole target (the hub has no delta, or the server
        ignores the query), checked by the signed length and hashes (python-tuf's check of a whole
        download) either way. False (logged) when it does not verify: the caller downloads whole."""
        bases = delta_bases(into_dir, target.zos.md5 or "")
        if not bases:
            return False
        # on the target's own URL (the hub's tuf_api.py answers it): whatever serves or intercepts
        # the target answers this request too
        url = (f"{self.targets_url.rstrip('/')}/{quote(target.sha256)}.{quote(target.path)}"
               f"?delta-from={','.join(p.name for p in bases)}")
        try:
            answer = self.fetcher.download_bytes(url, min(target.length, MAX_FLIST_BYTES))
            data = rebuild_from_delta(answer, bases, MAX_FLIST_BYTES) if is_delta(answer) else answer
            target.info.verify_length_and_hashes(data)
            with fsutil.atomic_writer(temp) as out:
                out.write(data)
        except (exceptions.DownloadError, exceptions.LengthOrHashMismatchError, ZosUpgradeError,
                OSError) as exc:
            log.warning("flist delta refused, downloading whole",
                        extra={"repo": self.name, "target": target.path,
                               "reason": f"{type(exc).__name__}: {exc}"})
            return False
        log.info("flist rebuilt from delta" if answer is not data else "flist downloaded whole, no delta",
                 extra={"repo": self.name, "target": target.path, "bytes": len(answer), "size": len(data)})
        return True

    # -- errors -------------------------------------------------------------------------------
    def _mapped(self, exc: Exception, updater: Updater | None, what: str, *,
                target: bool = False) -> TrustError:
        where = f"{self.name}: {what}"
        text = str(exc) or type(exc).__name__
        if isinstance(exc, exceptions.UnsignedMetadataError):
            return ForgedMetadata(f"{where}: {text} [{ForgedMetadata.attack}]")
        if isinstance(exc, exceptions.ExpiredMetadataError):
            role = _expired_role(text)
            expires = _expiry(updater, role)
            since = f" since {expires.isoformat()}" if expires else ""
            return FreezeAttack(f"{where}: {role} metadata expired{since} [{FreezeAttack.attack}]",
                                role=role, expires=expires)
        if isinstance(exc, exceptions.BadVersionNumberError):
            if _MIXED.match(text):
                return MixAndMatch(f"{where}: {text} [{MixAndMatch.attack}]")
            return RollbackAttack(f"{where}: {text} [{RollbackAttack.attack}]")
        if isinstance(exc, exceptions.LengthOrHashMismatchError):
            if target:
                return TargetMismatch(f"{where}: {text} [{TargetMismatch.attack}]")
            return MixAndMatch(f"{where}: {text} [{MixAndMatch.attack}]")
        if isinstance(exc, exceptions.DownloadLengthMismatchError):
            return EndlessData(f"{where}: {text} [{EndlessData.attack}]")
        if isinstance(exc, exceptions.SlowRetrievalError):
            return SlowRetrieval(f"{where}: {text} [{SlowRetrieval.attack}]")
        if isinstance(exc, exceptions.RepositoryError):
            # unparseable or ill-formed metadata (a hand-edited field the signature does not reach)
            return ForgedMetadata(f"{where}: invalid metadata: {text} [{ForgedMetadata.attack}]")
        cause = exc.__cause__
        detail = f"{text} ({type(cause).__name__}: {cause})" if cause else text
        return MetadataUnavailable(f"{where}: {detail}")

    # -- status -------------------------------------------------------------------------------
    def _record(self, at: datetime, *, updater: Updater | None, error: TrustError | None) -> None:
        previous = load_status(self.status_file)
        roles = _roles(updater) if updater is not None else (previous.roles if previous else {})
        status = TrustStatus(
            repo=self.name, metadata_url=self.metadata_url, last_refresh=at.isoformat(),
            last_success=at.isoformat() if error is None else (previous.last_success if previous else None),
            roles=roles, error=None if error is None else _error_record(error, at),
        )
        # the status file is a report: a full disk must not turn a good refresh into a failure
        with contextlib.suppress(OSError):
            save_status(self.status_file, status)

    def status(self) -> TrustStatus | None:
        return load_status(self.status_file)

    def close(self) -> None:
        """Close the fetcher's connections (ngclient's interface has no close; ours does)."""
        close = getattr(self.fetcher, "close", None)
        if callable(close):
            close()


_MIXED = re.compile(r"Expected (snapshot version \d|\S+ v\d)")


def _trusted(info: TargetFile) -> TrustedTarget:
    path = validate_target_path(info.path)
    return TrustedTarget(path, info, read_custom(info.unrecognized_fields.get("custom", {}), path))


def _expired_role(text: str) -> str:
    for role in TOP_LEVEL_ROLES:
        if role in text:
            return role
    return "metadata"


def _expiry(updater: Updater | None, role: str) -> datetime | None:
    if updater is None:
        return None
    trusted = updater._trusted_set
    return trusted[role].expires if role in trusted else None


def _roles(updater: Updater) -> dict[str, dict[str, Any]]:
    trusted = updater._trusted_set
    return {role: {"version": trusted[role].version, "expires": trusted[role].expires.isoformat()}
            for role in TOP_LEVEL_ROLES if role in trusted}


def _error_record(error: TrustError, at: datetime) -> dict[str, Any]:
    record: dict[str, Any] = {"type": type(error).__name__, "message": str(error), "at": at.isoformat()}
    if isinstance(error, UntrustedRelease):
        record["attack"] = error.attack
    if isinstance(error, FreezeAttack):
        record["role"] = error.role
        record["expires"] = error.expires.isoformat() if error.expires else None
    return record


def _durable(temp: Path, path: Path) -> None:
    """fsync the checked file, rename it to its md5 name, fsync the folder (fsutil's rule)."""
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsutil.fsync_dir(path.parent)
