"""TrustRepository: one TUF repository folder, made and kept with ``tuf.api.metadata``.

The release engineer's side of issue 15. A repository is ``metadata/`` (exactly what a static
server serves: ``N.root.json``, ``root.json``, ``N.targets.json``, ``N.snapshot.json``,
``timestamp.json``; ``consistent_snapshot`` on) and a :class:`KeyStore` kept apart from it.

Every change is built and verified whole in memory first — signed, each role's threshold checked
by python-tuf against the root that will be served, targets' paths and custom fields read back —
and only then written, one file at a time with :mod:`zos_upgrade.fsutil` (temp, fsync, rename,
fsync dir), root first and ``timestamp.json`` last: a node that sees the new timestamp finds every
file it names. A refused change writes nothing.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, Key, Signer
from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from zos_upgrade import fsutil
from zos_upgrade.trust.checks import (
    check_root_successor,
    check_signed_by_root,
    check_targets_fields,
    parse_metadata,
    signed_of,
)
from zos_upgrade.trust.errors import InvalidTargetPath, TrustRepositoryError
from zos_upgrade.trust.keys import KeyStore, generate_key
from zos_upgrade.trust.layout import (
    DEFAULT_EXPIRY,
    LATEST,
    RENEWAL_WINDOW,
    TOP_LEVEL_ROLES,
    ZosTarget,
    flist_custom,
    link_custom,
    metadata_filename,
    read_custom,
    release_custom,
    release_path_version,
    validate_flist_target,
    validate_target_path,
)
from zos_upgrade.trust.status import RoleStatus, role_report

__all__ = ["Change", "TrustRepository", "utcnow"]

# a metadata file a repository reads: far above any real one (a root with 16 keys is ~10 KB,
# targets with thousands of releases a few MB); read in one read(2) of at most this size
_MAX_METADATA = 8 * 1024 * 1024
_MAX_KEYS = 16
_VERSIONED_ROOT = re.compile(r"([1-9][0-9]{0,18})\.root\.json")
_SERIALIZER = JSONSerializer(compact=False)
_CHUNK = 1024 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Change:
    """What one repository change wrote: the new version of each role it re-signed."""

    versions: Mapping[str, int]
    files: tuple[str, ...]

    def describe(self) -> str:
        return ", ".join(f"{role} v{version}" for role, version in self.versions.items())


def _file_target(path: str, file: Path, custom_of: Callable[[str], dict[str, Any]]) -> TargetFile:
    """A target for ``file`` (length, sha256) in one streaming pass that also yields its md5."""
    sha256, md5, length = hashlib.sha256(), hashlib.md5(), 0
    try:
        with open(file, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                sha256.update(chunk)
                md5.update(chunk)
                length += len(chunk)
    except OSError as exc:
        raise TrustRepositoryError(f"{file}: cannot read the file to sign: {exc}") from exc
    return TargetFile(
        length,
        {"sha256": sha256.hexdigest()},
        path,
        unrecognized_fields={"custom": custom_of(md5.hexdigest())},
    )


class TrustRepository:
    """One TUF repository: its trusted metadata (verified when opened) and its keys."""

    def __init__(
        self,
        metadata_dir: Path,
        keys: KeyStore,
        *,
        now: Callable[[], datetime] = utcnow,
        expiry: Mapping[str, timedelta] = DEFAULT_EXPIRY,
    ) -> None:
        self.metadata_dir = metadata_dir
        self.keys = keys
        self._now = now
        self.expiry = {**DEFAULT_EXPIRY, **expiry}
        self.root, self.targets, self.snapshot, self.timestamp = self._load()

    # -- creating ---------------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        metadata_dir: Path,
        keys: KeyStore,
        *,
        root_keys: int = 1,
        root_threshold: int = 1,
        now: Callable[[], datetime] = utcnow,
        expiry: Mapping[str, timedelta] = DEFAULT_EXPIRY,
    ) -> TrustRepository:
        """A new repository: ``root_keys`` root keys of which ``root_threshold`` must sign, one key
        each for targets, snapshot and timestamp; version 1 of every role, no targets yet."""
        if not 1 <= root_keys <= _MAX_KEYS:
            raise TrustRepositoryError(f"--root-keys {root_keys}: expected 1 to {_MAX_KEYS}")
        if not 1 <= root_threshold <= root_keys:
            raise TrustRepositoryError(
                f"--root-threshold {root_threshold}: expected 1 to the number of root keys ({root_keys})"
            )
        if metadata_dir.is_dir() and any(metadata_dir.glob("*.json")):
            raise TrustRepositoryError(f"{metadata_dir}: already holds TUF metadata; refusing to replace it")
        expiries = {**DEFAULT_EXPIRY, **expiry}
        start = now().replace(microsecond=0)
        root = Root(expires=start + expiries["root"], consistent_snapshot=True)
        made: list[tuple[str, Ed25519PrivateKey, CryptoSigner]] = []
        for role in TOP_LEVEL_ROLES:
            for _ in range(root_keys if role == "root" else 1):
                private, signer = generate_key()
                root.add_key(signer.public_key, role)
                made.append((role, private, signer))
        root.roles["root"].threshold = root_threshold
        signers = {role: [s for r, _, s in made if r == role] for role in TOP_LEVEL_ROLES}
        documents: list[tuple[str, Metadata[Any]]] = []
        root_md = Metadata(root)
        _sign(root_md, signers["root"])
        check_root_successor(None, root_md, str(metadata_dir / "1.root.json"))
        documents += [("1.root.json", root_md), ("root.json", root_md)]
        for role, signed in (
            ("targets", Targets(expires=start + expiries["targets"])),
            ("snapshot", Snapshot(expires=start + expiries["snapshot"])),
            ("timestamp", Timestamp(expires=start + expiries["timestamp"])),
        ):
            md: Metadata[Any] = Metadata(signed)
            _sign(md, signers[role])
            check_signed_by_root(root, md, role)
            documents.append((metadata_filename(role, None if role == "timestamp" else 1), md))
        # keys first: metadata naming a key nobody kept would be a repository nobody can sign
        for role, private, signer in made:
            keys.save(role, private, signer)
        _write(metadata_dir, documents)
        return cls(metadata_dir, keys, now=now, expiry=expiries)

    # -- reading ----------------------------------------------------------------------------------
    def _read(self, name: str) -> bytes:
        path = self.metadata_dir / name
        data = fsutil.read_at_most(path, _MAX_METADATA)
        if data is None:
            raise TrustRepositoryError(f"{path}: missing (is {self.metadata_dir} a TUF repository?)")
        if len(data) > _MAX_METADATA:
            raise TrustRepositoryError(f"{path}: larger than {_MAX_METADATA} bytes")
        return data

    def _load(self) -> tuple[Metadata[Root], Metadata[Targets], Metadata[Snapshot], Metadata[Timestamp]]:
        """Read and verify the whole repository: the root chain from version 1, then timestamp ->
        snapshot -> targets as a node would, so a hand-edited file in any field is refused here."""
        if not self.metadata_dir.is_dir():
            raise TrustRepositoryError(f"{self.metadata_dir}: no such folder (run `zos-upgrade trust init`)")
        versions = sorted(
            int(m.group(1)) for p in self.metadata_dir.iterdir() if (m := _VERSIONED_ROOT.fullmatch(p.name))
        )
        if not versions or versions != list(range(1, len(versions) + 1)):
            raise TrustRepositoryError(
                f"{self.metadata_dir}: root versions {versions} are not 1..N without gaps"
            )
        previous: Root | None = None
        root_md: Metadata[Any] | None = None
        for version in versions:
            name = f"{version}.root.json"
            root_md = parse_metadata(self._read(name), "root", str(self.metadata_dir / name))
            check_root_successor(previous, root_md, str(self.metadata_dir / name))
            previous = signed_of(root_md, Root)
        assert root_md is not None and previous is not None
        root = previous
        copy_md = parse_metadata(self._read("root.json"), "root", str(self.metadata_dir / "root.json"))
        if copy_md.signed_bytes != root_md.signed_bytes:
            raise TrustRepositoryError(
                f"{self.metadata_dir / 'root.json'}: is not a copy of {versions[-1]}.root.json"
            )
        where = str(self.metadata_dir / "timestamp.json")
        ts_md = parse_metadata(self._read("timestamp.json"), "timestamp", where)
        check_signed_by_root(root, ts_md, where)
        snapshot_meta = signed_of(ts_md, Timestamp).snapshot_meta
        sn_md = self._load_member("snapshot", snapshot_meta, root)
        targets_meta = signed_of(sn_md, Snapshot).meta.get("targets.json")
        if targets_meta is None:
            raise TrustRepositoryError(f"{self.metadata_dir}: snapshot names no targets.json")
        tg_md = self._load_member("targets", targets_meta, root)
        check_targets_fields(
            signed_of(tg_md, Targets), str(self.metadata_dir / f"{targets_meta.version}.targets.json")
        )
        return root_md, tg_md, sn_md, ts_md

    def _load_member(self, role: str, meta: MetaFile, root: Root) -> Metadata[Any]:
        name = metadata_filename(role, meta.version)
        where = str(self.metadata_dir / name)
        data = self._read(name)
        try:
            meta.verify_length_and_hashes(data)
        except LengthOrHashMismatchError as exc:
            raise TrustRepositoryError(
                f"{where}: does not match the length/hashes its parent signs: {exc}"
            ) from exc
        md = parse_metadata(data, role, where)
        check_signed_by_root(root, md, where)
        if md.signed.version != meta.version:
            raise TrustRepositoryError(f"{where}: holds version {md.signed.version}, expected {meta.version}")
        return md

    # -- what is signed ---------------------------------------------------------------------------
    def target_files(self) -> dict[str, TargetFile]:
        return dict(self.targets.signed.targets)

    def zos_targets(self) -> dict[str, ZosTarget]:
        return {path: read_custom(t.custom, path) for path, t in self.targets.signed.targets.items()}

    def status(self) -> list[RoleStatus]:
        root = self.root.signed
        signed: dict[str, Signed] = {
            "root": root,
            "targets": self.targets.signed,
            "snapshot": self.snapshot.signed,
            "timestamp": self.timestamp.signed,
        }
        here = {role: sum(self.keys.has(k) for k in root.roles[role].keyids) for role in TOP_LEVEL_ROLES}
        # a role is due a third of its lifetime before it expires, at most its default window
        windows = {role: min(RENEWAL_WINDOW[role], self.expiry[role] / 3) for role in TOP_LEVEL_ROLES}
        return role_report(root, signed, self._now(), here, windows)

    # -- changes ----------------------------------------------------------------------------------
    def sign_flists(
        self,
        files: Iterable[tuple[str, Path]],
        *,
        rollout: Mapping[str, Any] | None = None,
        clear_rollout: bool = False,
    ) -> Change:
        """Add or update hub release flists (target path = flist name); links to them follow.

        ``rollout``: the phased rollout plan signed with each file (a document the caller validated
        with ``zos_upgrade.rollout.parse_plan``: this layer cannot import its peer). Without one, a
        re-signed file keeps the plan it had, unless ``clear_rollout``."""
        targets = copy.deepcopy(self.targets.signed)
        for name, file in files:
            validate_flist_target(name)
            self._refuse_overwriting_link(targets, name)
            plan = _plan_for(targets, name, rollout, clear_rollout)
            targets.targets[name] = _file_target(name, file, _flist_custom_of(plan))
            _follow_links(targets, name)
        return self._publish(new_targets=targets)

    def sign_releases(
        self,
        releases: Iterable[tuple[str, Path, str]],
        *,
        rollout: Mapping[str, Any] | None = None,
        clear_rollout: bool = False,
    ) -> Change:
        """Add or update publisher-mode releases ``(version, flist file, flist URL)``; the target path
        is the version text; ``latest`` moves to the highest version signed. ``rollout`` and
        ``clear_rollout`` as for :meth:`sign_flists`."""
        targets = copy.deepcopy(self.targets.signed)
        for version, file, url in releases:
            validate_target_path(version, "release version")
            release_path_version(version)
            self._refuse_overwriting_link(targets, version)
            plan = _plan_for(targets, version, rollout, clear_rollout)
            targets.targets[version] = _file_target(version, file, _release_custom_of(url, plan))
            _follow_links(targets, version)
        releases_signed = [
            p for p, t in targets.targets.items() if read_custom(t.custom, p).kind == "release"
        ]
        if releases_signed:
            _move_latest(targets, max(releases_signed, key=release_path_version))
        return self._publish(new_targets=targets)

    def withdraw_release(self, version: str) -> Change:
        """Stop signing publisher-mode release ``version``; ``latest`` moves to the highest left."""
        targets = copy.deepcopy(self.targets.signed)
        current = targets.targets.get(version)
        if current is None or read_custom(current.custom, version).kind != "release":
            raise TrustRepositoryError(f"release {version!r} is not signed in this repository")
        del targets.targets[version]
        left = [p for p, t in targets.targets.items() if read_custom(t.custom, p).kind == "release"]
        if left:
            _move_latest(targets, max(left, key=release_path_version))
        else:
            targets.targets.pop(LATEST, None)
        return self._publish(new_targets=targets)

    def link(self, name: str, target: str, *, rollout: Mapping[str, Any] | None = None) -> Change:
        """Point link / channel ``name`` at target ``target`` (which must be signed already).

        ``rollout``: the phased rollout plan of this link move (validated by the caller, as for
        :meth:`sign_flists`), signed on the link entry. A move is a rollout of its own: without a
        plan the link entry carries none (nodes follow it at once, unless ``target`` itself was
        signed with a plan), and an earlier move's plan never carries over."""
        targets = copy.deepcopy(self.targets.signed)
        _set_link(targets, name, target, rollout)
        return self._publish(new_targets=targets)

    def remove(self, path: str) -> Change:
        """Stop signing target ``path``; refused while a link points at it."""
        targets = copy.deepcopy(self.targets.signed)
        if path not in targets.targets:
            raise TrustRepositoryError(f"target {path!r} is not signed in this repository")
        pointing = [p for p, z in self.zos_targets().items() if z.kind == "link" and z.link == path]
        if pointing:
            raise TrustRepositoryError(
                f"target {path!r} is linked by {', '.join(sorted(pointing))}; "
                "move or remove those links first"
            )
        del targets.targets[path]
        return self._publish(new_targets=targets)

    def renew(self, role: str) -> Change:
        """Re-sign ``role`` with a fresh expiry (and what must follow: snapshot, timestamp)."""
        if role == "timestamp":
            return self.timestamp_only()
        if role == "root":
            return self._publish(new_root=copy.deepcopy(self.root.signed))
        if role == "targets":
            return self._publish(new_targets=copy.deepcopy(self.targets.signed))
        if role == "snapshot":
            return self._publish()
        raise TrustRepositoryError(f"role {role!r} is not one of {', '.join(TOP_LEVEL_ROLES)}")

    def timestamp_only(self, *, at_least: int = 0) -> Change:
        """A new timestamp with a fresh expiry, naming the current snapshot: what cron (or the hub's
        online key) runs. Needs only the timestamp key. ``at_least``: the lowest version to use (the
        hub's online key may have signed newer timestamps than this copy knows)."""
        root = self.root.signed
        ts = copy.deepcopy(self.timestamp.signed)
        ts.version = max(ts.version + 1, at_least)
        ts.expires = self._expires("timestamp")
        md: Metadata[Timestamp] = Metadata(ts)
        self._sign_role(md, root)
        _write(self.metadata_dir, [("timestamp.json", md)])
        self.timestamp = md
        return Change({"timestamp": ts.version}, ("timestamp.json",))

    def latest_targets_file(self) -> Path | None:
        """The newest ``N.targets.json`` in the folder when it is newer than what snapshot names: a
        targets upload whose snapshot and timestamp the hub's online keys are to sign."""
        best = None
        for path in self.metadata_dir.glob("*.targets.json"):
            head = path.name.split(".", 1)[0]
            if (
                head.isdigit()
                and int(head) > self.targets.signed.version
                and (best is None or int(head) > best[0])
            ):
                best = (int(head), path)
        return best[1] if best else None

    def snapshot_targets(self, path: Path) -> Change:
        """Make the verified targets file at ``path`` current: a new snapshot and timestamp naming it
        (what the hub's online snapshot key does after a targets-only upload)."""
        md = parse_metadata(self._read(path.name), "targets", str(path))
        check_signed_by_root(self.root.signed, md, str(path))
        targets = signed_of(md, Targets)
        check_targets_fields(targets, str(path))
        if targets.version <= self.targets.signed.version:
            raise TrustRepositoryError(
                f"{path}: version {targets.version} is not newer than the current targets"
            )
        previous = self.targets
        self.targets = md
        try:
            return self._publish()
        except BaseException:
            self.targets = previous
            raise

    def rotate(
        self,
        role: str,
        *,
        add: int = 0,
        add_keys: Sequence[Key] = (),
        revoke: Sequence[str] = (),
        threshold: int | None = None,
    ) -> tuple[Change, list[str]]:
        """Replace or revoke keys of ``role``: a new root version signed by the OLD root's threshold
        and the new one's. ``add`` new keys are generated into the keys folder; ``add_keys`` are
        public keys made elsewhere (an offline root key). Returns the change and the new key ids."""
        if role not in TOP_LEVEL_ROLES:
            raise TrustRepositoryError(f"role {role!r} is not one of {', '.join(TOP_LEVEL_ROLES)}")
        old = self.root.signed
        new_root = copy.deepcopy(old)
        delegation = new_root.roles[role]
        for keyid in revoke:
            if keyid not in delegation.keyids:
                raise TrustRepositoryError(
                    f"key {keyid} is not a {role} key (keys: {', '.join(delegation.keyids)})"
                )
            new_root.revoke_key(keyid, role)
        made: list[tuple[Ed25519PrivateKey, CryptoSigner]] = []
        for _ in range(add):
            made.append(generate_key())
        for key in [*add_keys, *(s.public_key for _, s in made)]:
            new_root.add_key(key, role)
        if threshold is not None:
            delegation.threshold = threshold
        if len(delegation.keyids) > _MAX_KEYS:
            raise TrustRepositoryError(
                f"{role} would have {len(delegation.keyids)} keys (at most {_MAX_KEYS})"
            )
        if not 1 <= delegation.threshold <= len(delegation.keyids):
            raise TrustRepositoryError(
                f"{role} threshold {delegation.threshold} is not 1 to its number of keys "
                f"({len(delegation.keyids)})"
            )
        extra = [s for _, s in made]
        change = self._publish(new_root=new_root, extra_signers=extra, save=[(role, p, s) for p, s in made])
        return change, [s.public_key.keyid for s in extra]

    def _refuse_overwriting_link(self, targets: Targets, name: str) -> None:
        current = targets.targets.get(name)
        if current is not None and read_custom(current.custom, name).kind == "link":
            raise TrustRepositoryError(f"{name!r} is a link; a release cannot take its name")

    # -- signing and writing ----------------------------------------------------------------------
    def _expires(self, role: str) -> datetime:
        return self._now().replace(microsecond=0) + self.expiry[role]

    def _signers(self, root: Root, role: str, extra: Sequence[Signer] = ()) -> list[Signer]:
        keys = [root.keys[k] for k in root.roles[role].keyids]
        wanted = {k.keyid for k in keys}
        found: list[Signer] = list(self.keys.signers(keys))
        have = {s.public_key.keyid for s in found}
        found += [s for s in extra if s.public_key.keyid in wanted and s.public_key.keyid not in have]
        return found

    def _sign_role(self, md: Metadata[Any], root: Root, extra: Sequence[Signer] = ()) -> None:
        role = md.signed.type
        signers = self._signers(root, role, extra)
        delegation = root.roles[role]
        if len(signers) < delegation.threshold:
            raise TrustRepositoryError(
                f"cannot sign {role}: its threshold is {delegation.threshold} but the keys folder(s) "
                f"{', '.join(map(str, self.keys.folders))} hold {len(signers)} of its keys "
                f"({', '.join(delegation.keyids)})"
            )
        _sign(md, signers)
        check_signed_by_root(root, md, role)

    def _publish(
        self,
        *,
        new_root: Root | None = None,
        new_targets: Targets | None = None,
        extra_signers: Sequence[Signer] = (),
        save: Sequence[tuple[str, Ed25519PrivateKey, CryptoSigner]] = (),
    ) -> Change:
        """Sign what changed and what must follow it, verify it all, then write it (timestamp last)."""
        old_root = self.root.signed
        documents: list[tuple[str, Metadata[Any]]] = []
        versions: dict[str, int] = {}
        root = old_root
        root_md: Metadata[Root] | None = None
        if new_root is not None:
            new_root.version = old_root.version + 1
            new_root.expires = self._expires("root")
            root_md = Metadata(new_root)
            signers = {s.public_key.keyid: s for s in self._signers(old_root, "root", extra_signers)}
            signers.update({s.public_key.keyid: s for s in self._signers(new_root, "root", extra_signers)})
            old_needed, new_needed = old_root.roles["root"].threshold, new_root.roles["root"].threshold
            _sign(root_md, list(signers.values()))
            name = f"{new_root.version}.root.json"
            check_root_successor(
                old_root, root_md, f"new root ({name}: {old_needed} old and {new_needed} new keys needed)"
            )
            documents += [(name, root_md), ("root.json", root_md)]
            versions["root"] = new_root.version
            root = new_root
            if new_targets is None and _role_changed(old_root, new_root, "targets"):
                new_targets = copy.deepcopy(self.targets.signed)
        targets_md: Metadata[Targets] | None = None
        targets_version = self.targets.signed.version
        if new_targets is not None:
            new_targets.version = targets_version + 1
            new_targets.expires = self._expires("targets")
            check_targets_fields(new_targets, "new targets")
            targets_md = Metadata(new_targets)
            self._sign_role(targets_md, root, extra_signers)
            targets_version = new_targets.version
            documents.append((metadata_filename("targets", targets_version), targets_md))
            versions["targets"] = targets_version
        snapshot = copy.deepcopy(self.snapshot.signed)
        snapshot.version += 1
        snapshot.expires = self._expires("snapshot")
        snapshot.meta["targets.json"] = MetaFile(targets_version)
        snapshot_md: Metadata[Snapshot] = Metadata(snapshot)
        self._sign_role(snapshot_md, root, extra_signers)
        documents.append((metadata_filename("snapshot", snapshot.version), snapshot_md))
        versions["snapshot"] = snapshot.version
        ts = copy.deepcopy(self.timestamp.signed)
        ts.version += 1
        ts.expires = self._expires("timestamp")
        ts.snapshot_meta = MetaFile(snapshot.version)
        ts_md: Metadata[Timestamp] = Metadata(ts)
        self._sign_role(ts_md, root, extra_signers)
        documents.append(("timestamp.json", ts_md))
        versions["timestamp"] = ts.version
        # all verified: new keys first (a root naming a key nobody kept is lost), then the files
        for role, private, signer in save:
            self.keys.save(role, private, signer)
        _write(self.metadata_dir, documents)
        if root_md is not None:
            self.root = root_md
        if targets_md is not None:
            self.targets = targets_md
        self.snapshot, self.timestamp = snapshot_md, ts_md
        return Change(versions, tuple(name for name, _ in documents))


def _flist_custom_of(rollout: Mapping[str, Any] | None) -> Callable[[str], dict[str, Any]]:
    return lambda md5: flist_custom(md5, rollout)


def _release_custom_of(url: str, rollout: Mapping[str, Any] | None) -> Callable[[str], dict[str, Any]]:
    return lambda md5: release_custom(url, md5, rollout)


def _plan_for(targets: Targets, name: str, rollout: Mapping[str, Any] | None,
              clear: bool) -> Mapping[str, Any] | None:
    """The plan a (re-)signed release carries: the given one, none when cleared, else the one it had."""
    if rollout is not None and clear:
        raise TrustRepositoryError("give a rollout plan or clear it, not both")
    if rollout is not None or clear:
        return rollout
    current = targets.targets.get(name)
    return read_custom(current.custom, name).rollout if current is not None else None


def _move_latest(targets: Targets, newest: str) -> None:
    """``latest`` to ``newest``: its plan stays while it names the same release (a move drops it)."""
    current = targets.targets.get(LATEST)
    zos = read_custom(current.custom, LATEST) if current is not None else None
    _set_link(targets, LATEST, newest, zos.rollout if zos is not None and zos.link == newest else None)


def _role_changed(old: Root, new: Root, role: str) -> bool:
    a, b = old.roles[role], new.roles[role]
    return (sorted(a.keyids), a.threshold) != (sorted(b.keyids), b.threshold)


def _set_link(targets: Targets, name: str, target: str, rollout: Mapping[str, Any] | None = None) -> None:
    """Make ``name`` a link target carrying ``target``'s length and hashes (and ``rollout``, the plan
    of this link move)."""
    validate_target_path(name, "link name")
    validate_target_path(target, "link target")
    linked = targets.targets.get(target)
    if linked is None:
        raise TrustRepositoryError(
            f"cannot link {name!r} to {target!r}: {target!r} is not a signed target (sign it first)"
        )
    kind = read_custom(linked.custom, target).kind
    if kind == "link":
        raise TrustRepositoryError(f"cannot link {name!r} to {target!r}: {target!r} is itself a link")
    if kind == "flist":
        validate_flist_target(name, "link name")
    elif name != LATEST:
        try:
            release_path_version(name)
        except InvalidTargetPath:
            pass
        else:
            raise InvalidTargetPath(f"link name {name!r} is a version; a release channel needs another name")
    current = targets.targets.get(name)
    if current is not None and read_custom(current.custom, name).kind != "link":
        raise TrustRepositoryError(f"{name!r} is a signed release, not a link; refusing to replace it")
    targets.targets[name] = TargetFile(
        linked.length, dict(linked.hashes), name, unrecognized_fields={"custom": link_custom(target, rollout)}
    )


def _follow_links(targets: Targets, name: str) -> None:
    """Links to ``name`` take its new length and hashes (a link always carries its file's)."""
    for path, target in list(targets.targets.items()):
        zos = read_custom(target.custom, path)
        if zos.kind == "link" and zos.link == name:
            _set_link(targets, path, name, zos.rollout)  # the same move: its plan stays


def _sign(md: Metadata[Any], signers: Iterable[Signer]) -> None:
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)


def _write(folder: Path, documents: Sequence[tuple[str, Metadata[Any]]]) -> None:
    """Write each document durably, in order (callers put ``timestamp.json`` last)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, md in documents:
        fsutil.atomic_write_bytes(folder / name, md.to_bytes(_SERIALIZER))
