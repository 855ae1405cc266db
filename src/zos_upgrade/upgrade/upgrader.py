"""The Upgrader: one crash-safe transaction per release (SPEC 11), read top to bottom in ``_run``.

fetch -> plan -> self -> pre-copy -> stop -> backup -> apply -> post-copy -> migrate -> restart ->
probation -> post-start -> commit. The journal (``journal.py``) records every step durably first.

**Commit point**: the journal's durable move to ``committed``. That record carries the new manifest,
so everything after it (writing the manifest, the boot files, dropping the backup, deleting the
journal) is idempotent roll-forward work. Before it, any failure or crash rolls BACK: services of
the new release stopped, added files removed, replaced and removed files renamed back from the
backup, old configs reinstalled and old services restarted. The one exception is ``self-updated``:
the upgrader replaced its own program and exits (``RestartNeeded``); the next process finds the
journal there and continues forward from ``pre-copy``.

**Data the hooks change** (``datapaths.py``): a release lists in ``hooks.paths`` the node paths its
hooks may change outside its own files. They are validated at plan time (a hostile entry refuses
the release before anything runs), copied into ``<state>/backup/data`` and recorded in the journal
before the first hook, restored on rollback (before the release's files), dropped at commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import atomic_write_json, sweep_temps
from zos_upgrade.hub.models import FlistInfo
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.events import FListEvent
from zos_upgrade.node.infofile import decode_info
from zos_upgrade.sources.base import ReleaseSource, Target, VerifiedRelease
from zos_upgrade.supervisor import Supervisor
from zos_upgrade.upgrade import services as svc
from zos_upgrade.upgrade.crash import crash_point
from zos_upgrade.upgrade.datapaths import DataPaths, read_data_paths, state_relative
from zos_upgrade.upgrade.errors import (
    ReleaseRefused,
    RestartNeeded,
    RollbackIncomplete,
    RolledBack,
    UpgradeError,
)
from zos_upgrade.upgrade.flister import Flister, Mount
from zos_upgrade.upgrade.hooks import run_hook
from zos_upgrade.upgrade.journal import Journal, JournalRecord, Phase, TransactionKind
from zos_upgrade.upgrade.manifest import SERVICE_DIR, Manifest, ManifestStore, scan_release
from zos_upgrade.upgrade.nodefs import NodeFS, check_relative
from zos_upgrade.upgrade.plan import Plan, make_plan
from zos_upgrade.upgrade.report import UpgradeReport

__all__ = ["Upgrader"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
LAST_RESULT = "last-transaction.json"
C = TypeVar("C")
_KIND_OF: dict[Target, TransactionKind] = {"boot": "boot", "bin": "bin-install"}


class Upgrader:
    def __init__(
        self,
        root: Path,
        state_dir: Path,
        flister: Flister,
        supervisor: Supervisor,
        *,
        self_update: bool = True,
        program: str = "/bin/zos-upgrade",
        protected: Sequence[str] = ("upgrade",),
        probation: float = 30.0,
        start_timeout: float = 30.0,
        hook_timeout: float = 300.0,
        stop_timeout: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.state_dir = Path(state_dir)
        self.flister = flister
        self.supervisor = supervisor
        self.self_update = self_update
        self.program = check_relative(program.lstrip("/"), "program path")
        self.protected = tuple(protected)
        self.probation = probation
        self.start_timeout = start_timeout
        self.hook_timeout = hook_timeout
        self.stop_timeout = stop_timeout
        self._sleep = sleep
        self._clock = clock
        self.journal = Journal(self.state_dir)
        self.manifests = ManifestStore(self.state_dir)
        self.files = NodeFS(self.root, self.state_dir / "backup" / "current")
        self.data = DataPaths(self.files, self.state_dir / "backup" / "data", self.state_dir)
        self.last_report: UpgradeReport | None = None
        # zinit reads the release's etc/zinit/*.yaml itself: those files, applied and rolled back
        # byte for byte with the others, ARE its configs; other back-ends get them rendered
        self._configs_are_files = supervisor.reads_configs_from(self.root / SERVICE_DIR)

    # ============================================================== public API

    def installed_boot(self) -> Manifest | None:
        return self.manifests.load("boot")

    def installed_bins(self) -> dict[str, Manifest]:
        return self.manifests.bins()

    async def install(self, release: VerifiedRelease) -> UpgradeReport:
        """Install a verified release: the boot release (also a first install) or one bins package."""
        self._refuse_open_journal()
        return await self._transaction(release, self._clock())

    async def install_from(self, source: ReleaseSource[C], candidate: C, target: Target) -> UpgradeReport:
        """Let ``source`` verify ``candidate`` as the first part of the fetch step, then install it.

        A candidate the source rejects is refused like any fetch failure: ReleaseRefused at step
        ``fetch``, recorded in ``last-transaction.json``, the node unchanged.
        """
        self._refuse_open_journal()
        started = self._clock()
        try:
            release = await source.verify(candidate, target)
        except (ZosUpgradeError, OSError) as exc:
            # which bins package it would have been is the source's to say; the boot one is known
            old = self.installed_boot() if target == "boot" else None
            report = UpgradeReport(_KIND_OF[target], old.version if old else "", "")
            raise self._refused(report, "fetch", exc) from exc
        return await self._transaction(release, started)

    async def uninstall_binary(self, fqdn: str) -> UpgradeReport:
        """Remove a bins package using OUR manifest (the hub may not list it any more)."""
        split_fqdn(fqdn)
        old = self.manifests.load(fqdn)
        if old is None:
            raise UpgradeError(
                f"bins package {fqdn} is not installed (no manifest in {self.manifests.bins_dir})"
            )
        self._refuse_open_journal()
        plan = make_plan(
            old_files=old.files, old_services=old.services, new_files={}, new_services={},
            node=self.files.record, protected=self.protected, program=None, require_services=False,
            source=fqdn, owned_elsewhere=self._owned_elsewhere(fqdn),
        )
        report = UpgradeReport("bin-uninstall", old.version, "")
        self._begin(kind="bin-uninstall", key=fqdn, source=fqdn, release=None, from_version=old.version,
                    to_version="", plan=plan, new_manifest=None)
        crash_point("after-plan")
        return await self._run(None, report, resumed=False)

    async def recover(self) -> str | None:
        """Finish what a previous process left: roll forward, continue after self-update, or roll back.

        Returns what was done (None when there was no journal). Raises UpgradeFailed only when a
        rollback itself could not complete (the journal stays; the next call tries again).
        """
        await asyncio.to_thread(self.flister.sweep)
        await asyncio.to_thread(self._sweep_temps)
        record = self.journal.load()
        if record is None:
            await asyncio.to_thread(self._drop_backups)
            return None
        log.warning("unfinished transaction found", extra={"phase": record.phase.value, "id": record.id})
        if record.phase is Phase.COMMITTED:
            await self._roll_forward()
            return f"rolled forward: committed {record.to_version or 'uninstall of ' + record.target_key}"
        if record.phase is Phase.ROLLING_BACK:
            await self._undo()
            reason = record.failure.reason if record.failure else "unknown"
            return f"rolled back to {record.from_version or 'nothing'}: {reason}"
        if record.phase is Phase.SELF_UPDATED:
            return await self._continue_after_self_update(record)
        reason = f"the upgrader stopped in phase {record.phase.value!r} (crash or kill)"
        await self._roll_back("recovery", reason)
        return f"rolled back to {record.from_version or 'nothing'}: {reason}"

    def sync_boot_files(self) -> None:
        """Rewrite the boot files from the manifests (they are a view; the manifests are the truth)."""
        boot = Boot(self.root)
        manifest = self.installed_boot()
        if manifest is not None:
            repo, _ = split_fqdn(manifest.fqdn)
            boot.set(FListEvent(repo, _flist_info(manifest)))
        bins = self.installed_bins()
        if bins or boot.bins_file.exists():
            boot.set_bins({key: _flist_info(m) for key, m in bins.items()})

    # ============================================================== the transaction

    async def _transaction(self, release: VerifiedRelease, started: float) -> UpgradeReport:
        old = self.manifests.load(release.key)
        report = UpgradeReport(_KIND_OF[release.target], old.version if old else "", release.version)
        # 1. fetch (from ``started``: the source's verification is part of it): the whole release,
        #    every block checked, into <state>/mounts; nothing on the node changes
        try:
            mount = await self.flister.mount(release)
        except (ZosUpgradeError, OSError) as exc:
            raise self._refused(report, "fetch", exc) from exc
        report.phases["fetch"] = self._clock() - started
        _count_download(report, mount)
        crash_point("after-fetch")
        # 2. plan against the manifest of what is installed and the node as it is
        started = self._clock()
        try:
            plan, manifest = await asyncio.to_thread(self._plan, mount, old, release)
        except (ZosUpgradeError, OSError) as exc:
            raise self._refused(report, "plan", exc) from exc
        report.phases["plan"] = self._clock() - started
        self._begin(kind=report.kind, key=release.key, source=release.source, release=release,
                    from_version=report.from_version, to_version=release.version, plan=plan,
                    new_manifest=manifest)
        crash_point("after-plan")
        return await self._run(mount.path, report, resumed=False)

    async def _run(self, tree: Path | None, report: UpgradeReport, *, resumed: bool) -> UpgradeReport:
        """Steps 3-7 of SPEC 11 from the journal's phase; ``tree`` is None for an uninstall."""
        record = self.journal.record
        plan = record.plan
        new = _decode_manifest(record.new_manifest)
        new_services = new.services if new else {}
        restarted = plan.services_restart + plan.services_start
        step = "self"
        try:
            # 3. self-update: install our own new program and let the supervisor restart us
            if tree is not None and not resumed and plan.program_update and self.self_update:
                await self._self_update(tree)
            # 4. save the data the hooks may change, pre-copy, stop, backup, apply, post-copy, migrate
            step = "save-data"
            if tree is not None and plan.data_paths and not self.journal.record.data_saved:
                with self._timed(report, step):
                    saved = await asyncio.to_thread(self.data.save_all, plan.data_paths)
                    self.journal.record_data_saved(saved)
            step = "pre-copy"
            with self._timed(report, step):
                await self._hook(tree, "pre-copy")
            self.journal.advance(Phase.PRE_COPIED)
            crash_point("after-pre-copy")
            step = "stop"
            with self._timed(report, step):
                await svc.stop_services(self.supervisor, plan.to_stop, **self._pace())
            self.journal.advance(Phase.STOPPED)
            crash_point("after-stop")
            step = "backup"
            with self._timed(report, step):
                await asyncio.to_thread(self._backup, plan)
            self.journal.advance(Phase.BACKED_UP)
            crash_point("after-backup")
            step = "apply"
            self.journal.advance(Phase.APPLYING)
            with self._timed(report, step):
                await asyncio.to_thread(self._apply, tree, plan, new)
            step = "post-copy"
            with self._timed(report, step):
                await self._hook(tree, "post-copy")
            self.journal.advance(Phase.APPLIED)
            crash_point("after-apply")
            step = "migrate"
            with self._timed(report, step):
                await self._hook(tree, "migrate")
            self.journal.advance(Phase.MIGRATED)
            crash_point("after-migrate")
            # 5. restart: configs in, removed services out, forget/monitor/start the rest
            step = "restart"
            with self._timed(report, step):
                if not self._configs_are_files:
                    await svc.install_configs(self.supervisor, new_services, plan.services_config)
                await svc.remove_services(self.supervisor, plan.services_remove, **self._pace(),
                                          remove_configs=not self._configs_are_files)
                await svc.restart_services(self.supervisor, restarted, **self._pace())
            self.journal.advance(Phase.RESTARTED)
            crash_point("after-restart")
            # 6. probation, post-start
            step = "probation"
            with self._timed(report, step):
                await svc.probation(self.supervisor, restarted, new_services, duration=self.probation,
                                    start_timeout=self.start_timeout, sleep=self._sleep, clock=self._clock)
            step = "post-start"
            with self._timed(report, step):
                await self._hook(tree, "post-start")
            self.journal.advance(Phase.PROBATION_PASSED)
            crash_point("after-probation")
        except RestartNeeded:
            raise
        except (Exception, asyncio.CancelledError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.error("transaction failed, rolling back", extra={"step": step, "reason": reason})
            # a cancelled task (SIGTERM) still rolls back before it ends
            try:
                await asyncio.shield(self._roll_back(step, reason))
            except RollbackIncomplete as failed:
                failed.report = report
                raise
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise RolledBack(reason, step=step, report=report) from exc
        # 7. commit: THE COMMIT POINT is this durable journal write (it carries the new manifest)
        self.journal.advance(Phase.COMMITTED)
        with self._timed(report, "commit"):
            await self._roll_forward()
        report.files_added, report.files_replaced, report.files_removed = (
            len(plan.add), len(plan.replace), len(plan.remove))
        report.services_restarted = plan.services_restart + plan.services_start
        self.last_report = report
        log.info("transaction committed", extra={"kind": report.kind, "from": report.from_version,
                                                 "to": report.to_version})
        return report

    async def _self_update(self, tree: Path) -> None:
        self.files.backup(self.program)
        new = _decode_manifest(self.journal.record.new_manifest)
        # a fresh node may lack the program's directory yet; rollback removes planned dirs again
        ancestors = set(Path(self.program).parents)
        for rel in self.journal.record.plan.dirs_add:
            if new is not None and Path(rel) in ancestors:
                self.files.make_dir(rel, new.files[rel].mode)
        self.files.apply(self.program, tree / self.program, new.files.get(self.program) if new else None)
        self.journal.advance(Phase.SELF_UPDATED)
        crash_point("after-self-update")
        log.warning("upgrader program replaced; restart needed", extra={"program": "/" + self.program})
        raise RestartNeeded(
            f"/{self.program} was replaced by the release's copy; exit and let the supervisor restart it "
            "(the journal continues the transaction)"
        )

    async def _continue_after_self_update(self, record: JournalRecord) -> str:
        """Re-mount the release from the flist file the journal names (no network: the source
        checked it before the plan; its md5 is checked again here) and continue from pre-copy."""
        report = UpgradeReport(record.kind, record.from_version, record.to_version)
        try:
            mount = await self.flister.mount(await asyncio.to_thread(self._kept_release, record))
        except (ZosUpgradeError, OSError) as exc:
            reason = f"cannot continue after self-update: {type(exc).__name__}: {exc}"
            await self._roll_back("fetch", reason)
            return f"rolled back to {record.from_version or 'nothing'}: {reason}"
        try:
            await self._run(mount.path, report, resumed=True)
        except RolledBack as exc:
            return f"continued after self-update, failed at {exc.step}, rolled back: {exc.reason}"
        return f"continued after self-update: committed {record.to_version}"

    def _kept_release(self, record: JournalRecord) -> VerifiedRelease:
        """The release a journal was planned for, from its kept flist file (md5 re-checked)."""
        manifest = _decode_manifest(record.new_manifest)
        if manifest is None:
            raise UpgradeError(f"{self.journal.path}: a self-update journal without the new manifest")
        # journals of upgraders before the release sources name no file: the sources' naming rule
        flist = self.flister.downloads_dir / record.mount_md5
        if record.flist_file:
            flist = self.state_dir / record.flist_file  # relative, unless it was outside the state dir
        actual = _md5_of_file(flist)
        if actual != record.mount_md5:
            raise UpgradeError(f"release {record.source}: kept flist file {flist} changed since the plan "
                               f"(md5 {actual}, planned {record.mount_md5})")
        return VerifiedRelease(
            target="boot" if manifest.kind == "boot" else "bin", fqdn=manifest.fqdn,
            version=manifest.version, source=record.source, flist=flist, md5=record.mount_md5,
            verified_by="md5 recorded in the journal", info=manifest.info, block_store=record.block_store,
        )

    # ============================================================== steps

    def _plan(self, mount: Mount, old: Manifest | None, release: VerifiedRelease) -> tuple[Plan, Manifest]:
        files, services = scan_release(mount.path)
        boot = release.target == "boot"
        source, info = release.source, release.info
        owned_elsewhere = self._owned_elsewhere(release.key)
        plan = make_plan(
            old_files=old.files if old else {}, old_services=old.services if old else {},
            new_files=files, new_services=services, node=self.files.record, protected=self.protected,
            program=self.program if self.self_update and boot else None,
            require_services=boot, source=source,
            owned_elsewhere=owned_elsewhere,
        )
        # before anything runs: a hostile hooks.paths refuses the release here (nothing changed yet)
        owned = {*files, *(old.files if old else {}), *owned_elsewhere}
        plan.data_paths = read_data_paths(
            mount.path, state_rel=state_relative(self.root, self.state_dir), owned=owned)
        for rel in plan.data_paths:
            self.data.check(rel)
        if not info.get("md5"):
            info = {**info, "md5": mount.md5}
        manifest = Manifest(
            kind=release.target, fqdn=release.fqdn, source=source, version=release.version,
            md5=mount.md5, info=info, files=files, services=services, installed=time.time(),
        )
        return plan, manifest

    def _sweep_temps(self) -> None:
        """Temp files of atomic writes a kill cut short: journal, results, manifests, boot files, and
        the supervisor's service configs."""
        boot_dir = Boot(self.root).name_file.parent
        removed = [p for folder in (self.state_dir, self.manifests.root, self.manifests.bins_dir, boot_dir)
                   for p in sweep_temps(folder)]
        removed += self.supervisor.sweep_config_temps()
        if removed:
            log.info("temp files of interrupted writes removed", extra={"paths": [str(p) for p in removed]})

    def _owned_elsewhere(self, key: str) -> dict[str, str]:
        """Every path of the installed manifests other than ``key``'s -> who owns it."""
        owners = {"boot": self.installed_boot(), **self.installed_bins()}
        owned: dict[str, str] = {}
        for owner, manifest in owners.items():
            if owner == key or manifest is None:
                continue
            label = "the boot release" if owner == "boot" else f"bins package {owner}"
            for rel in manifest.files:
                owned.setdefault(rel, label)
        return owned

    def _backup(self, plan: Plan) -> None:
        for rel in plan.replace + plan.remove:
            self.files.backup(rel)

    def _apply(self, tree: Path | None, plan: Plan, new: Manifest | None) -> None:
        if tree is not None and new is not None:
            for rel in plan.dirs_add:
                self.files.make_dir(rel, new.files[rel].mode)
            changes = plan.add + plan.replace
            half = len(changes) // 2
            for rel in changes[:half]:
                self.files.apply(rel, tree / rel, new.files[rel])
            crash_point("mid-apply")
            for rel in changes[half:]:
                self.files.apply(rel, tree / rel, new.files[rel])
        else:
            crash_point("mid-apply")
        for rel in plan.remove:
            self.files.remove(rel)
        for rel in plan.dirs_remove:
            self.files.remove_dir_if_empty(rel)

    async def _hook(self, tree: Path | None, name: str) -> None:
        if tree is None:
            return
        record = self.journal.record
        env = {
            "ZOS_ROOT": str(self.root),
            "ZOS_STATE_DIR": str(self.state_dir),
            "ZOS_RELEASE": str(tree),
            "ZOS_FROM_VERSION": record.from_version,
            "ZOS_TO_VERSION": record.to_version,
            "ZOS_TRANSACTION": record.kind,
        }
        await run_hook(tree, name, env=env, timeout=self.hook_timeout)

    # ============================================================== rollback and roll-forward

    async def _roll_back(self, step: str, reason: str) -> None:
        self.journal.begin_rollback(step, reason)
        try:
            await self._undo()
        except (Exception, asyncio.CancelledError) as exc:
            log.error("rollback failed; it is retried at the next start",
                      extra={"step": step, "error": f"{type(exc).__name__}: {exc}"})
            raise RollbackIncomplete(f"{reason}; rollback failed: {type(exc).__name__}: {exc}",
                                     step=step) from exc

    async def _undo(self) -> None:
        """Put the node back exactly on the old release. Every step is idempotent (crash-safe)."""
        record = self.journal.record
        plan = record.plan
        failure = record.failure
        touched_services = failure is None or failure.from_phase not in (Phase.PLANNED, Phase.SELF_UPDATED)
        old = self.manifests.load(record.target_key)
        old_services = old.services if old else {}
        kwargs = self._pace()
        if touched_services:
            await svc.stop_services(self.supervisor, plan.services_start + plan.services_restart, **kwargs)
        # the hooks' data first: removing what they created may empty a directory the release added
        await asyncio.to_thread(self.data.restore_all, record.data_saved)
        await asyncio.to_thread(self._restore_files, plan, old)
        crash_point("mid-rollback")
        if touched_services:
            added = [n for n in plan.services_start if n not in old_services]
            await svc.remove_services(self.supervisor, added, **kwargs,
                                      remove_configs=not self._configs_are_files)
            if not self._configs_are_files:
                configs = [n for n in plan.services_config + plan.services_remove if n in old_services]
                await svc.install_configs(self.supervisor, old_services, configs)
            again = [n for n in plan.services_restart + plan.services_remove if n in old_services]
            await svc.restart_services(self.supervisor, again, **kwargs)
        await asyncio.to_thread(self._drop_backups)
        failure_doc = {"step": failure.step, "reason": failure.reason} if failure else {}
        self._write_result(record, "rolled-back", **failure_doc)
        self.journal.finish()
        log.warning("transaction rolled back", extra={"kind": record.kind, "version": record.from_version,
                                                      **failure_doc})

    def _restore_files(self, plan: Plan, old: Manifest | None) -> None:
        # added files go first: on a full disk that frees the space the restores need
        self.files.clear_temps(plan.touched_paths)
        for rel in plan.add:
            self.files.remove(rel)
        for rel in reversed(plan.dirs_add):
            self.files.remove_dir_if_empty(rel)
        for rel in sorted(plan.dirs_remove):
            mode = old.files[rel].mode if old and rel in old.files else 0o755
            self.files.make_dir(rel, mode)
        for rel in plan.replace + plan.remove:
            self.files.restore(rel)

    async def _roll_forward(self) -> None:
        record = self.journal.record
        if record.new_manifest:
            self.manifests.save_text(record.target_key, record.new_manifest.encode())
        else:
            self.manifests.remove(record.target_key)
        crash_point("after-manifest")
        self.sync_boot_files()
        crash_point("after-boot-files")
        await asyncio.to_thread(self._drop_backups)
        keep = {m.md5 for m in self.installed_bins().values()}
        boot = self.installed_boot()
        if boot is not None:
            keep.add(boot.md5)
        await asyncio.to_thread(self.flister.prune, keep)
        self._write_result(record, "committed")
        self.journal.finish()

    # ============================================================== helpers

    def _drop_backups(self) -> None:
        self.files.drop_backup()
        self.data.drop()

    def _pace(self) -> dict[str, Any]:
        return {"stop_timeout": self.stop_timeout, "sleep": self._sleep, "clock": self._clock}

    def _begin(
        self, *, kind: TransactionKind, key: str, source: str, release: VerifiedRelease | None,
        from_version: str, to_version: str, plan: Plan, new_manifest: Manifest | None,
    ) -> None:
        now = time.time()
        self.journal.begin(JournalRecord(
            id=uuid.uuid4().hex, kind=kind, phase=Phase.PLANNED, source=source, target_key=key,
            from_version=from_version, to_version=to_version, mount_md5=release.md5 if release else "",
            plan=plan, new_manifest=msgspec.json.encode(new_manifest).decode() if new_manifest else "",
            started=now, updated=now, flist_file=self._state_path(release.flist) if release else "",
            block_store=release.block_store if release else None,
        ))

    def _state_path(self, path: Path) -> str:
        """``path`` as the journal records it: relative to the state directory when inside it, so a
        state directory moved or copied whole (a restored backup) still recovers."""
        try:
            return str(path.relative_to(self.state_dir))
        except ValueError:
            return str(path)

    def _refuse_open_journal(self) -> None:
        if self.journal.open or self.journal.load() is not None:
            raise UpgradeError(f"{self.journal.path}: an unfinished transaction exists; call recover() first")

    def _refused(self, report: UpgradeReport, step: str, exc: BaseException) -> ReleaseRefused:
        reason = f"{type(exc).__name__}: {exc}"
        log.error("release refused; node unchanged", extra={"step": step, "reason": reason})
        self._write_result_doc({"kind": report.kind, "from_version": report.from_version,
                                "to_version": report.to_version, "result": "refused", "step": step,
                                "reason": reason, "time": time.time()})
        return ReleaseRefused(reason, step=step, report=report)

    def _write_result(self, record: JournalRecord, result: str, **extra: str) -> None:
        self._write_result_doc({"kind": record.kind, "from_version": record.from_version,
                                "to_version": record.to_version, "result": result, "time": time.time(),
                                **extra})

    def _write_result_doc(self, doc: dict[str, Any]) -> None:
        """``<state>/last-transaction.json``: what the last transaction did and why (for status)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.state_dir / LAST_RESULT, doc)

    @contextlib.contextmanager
    def _timed(self, report: UpgradeReport, name: str) -> Iterator[None]:
        started = self._clock()
        try:
            yield
        finally:
            report.phases[name] = report.phases.get(name, 0.0) + self._clock() - started


def _count_download(report: UpgradeReport, mount: Mount) -> None:
    report.bytes_downloaded = mount.report.bytes_downloaded
    report.blocks_fetched = mount.report.blocks_fetched
    report.blocks_from_cache = mount.report.blocks_from_cache
    report.release_bytes = mount.report.bytes_written


def _decode_manifest(text: str) -> Manifest | None:
    return msgspec.json.decode(text, type=Manifest) if text else None


def _flist_info(manifest: Manifest) -> FlistInfo:
    return decode_info(msgspec.json.encode(manifest.info))


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
