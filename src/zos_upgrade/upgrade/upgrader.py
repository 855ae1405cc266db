"""The Upgrader: one crash-safe transaction per release (SPEC 11); the public API and recovery.

What a transaction does, step by step, is the table in ``steps.py``; how it ends (rolled back,
rolled forward, refused) is ``outcome.py``. This module decides which transaction to run, and what
a journal found at start-up means:

* ``committed`` (the commit point passed) rolls FORWARD;
* ``rolling-back`` finishes the rollback;
* ``self-updated`` continues the table after the self step: the new program re-mounts the part of
  the release the plan staged from the flist file the journal names, without the network (its md5
  is checked again; the blocks come from the node's files and the cache, which kept every block
  fetched before the restart);
* any other phase rolls BACK.

``rollback()`` takes the boot release back to the previous one, through the same table
(``rollback.py`` says what is kept for it, which hooks run, and what the daemon holds afterwards).

**Data the hooks change** (``datapaths.py``): a release lists in ``hooks.paths`` the node paths its
hooks may change outside its own files. They are validated at plan time (a hostile entry refuses
the release before anything runs), copied into ``<state>/backup/data`` and recorded in the journal
before the first hook, restored on rollback (before the release's files), dropped at commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import msgspec

import zos_upgrade.upgrade.outcome as outcome
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import sweep_temps
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.node.boot import Boot
from zos_upgrade.sources.base import ReleaseSource, Target, VerifiedRelease
from zos_upgrade.supervisor import Supervisor
from zos_upgrade.upgrade.context import Clock, Context, DisruptGate, Settings, Sleep
from zos_upgrade.upgrade.errors import ReleaseRefused, RolledBack, UpgradeError
from zos_upgrade.upgrade.flister import Flister, Mount, Partial, check_kept_flist
from zos_upgrade.upgrade.journal import Holds, JournalRecord, Phase
from zos_upgrade.upgrade.manifest import Manifest
from zos_upgrade.upgrade.nodefs import check_relative
from zos_upgrade.upgrade.plan import Plan, make_plan
from zos_upgrade.upgrade.preflight import DEFAULT_MARGIN, FreeSpace, statvfs_space
from zos_upgrade.upgrade.probe import ProgramProbe
from zos_upgrade.upgrade.report import TransactionKind, UpgradeReport
from zos_upgrade.upgrade.restore import RestoreReport, restore_from_backup
from zos_upgrade.upgrade.rollback import kept_release, rollback_target

# The transaction's table (steps.py), its staging and the preview are imported by the methods that
# run them: an idle daemon builds its Upgrader and recovers with it, and never pays for them (issue 19)
if TYPE_CHECKING:
    from zos_upgrade.upgrade.preview import Preview
    from zos_upgrade.upgrade.steps import Transaction

__all__ = ["Upgrader"]

log = logging.getLogger(__name__)

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
        reserved: Mapping[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        trust_files: Sequence[Path] = (),
        free_space: FreeSpace = statvfs_space,
        space_margin: int = DEFAULT_MARGIN,
        compatible: str | None = None,
        disrupt: DisruptGate | None = None,
        probe: ProgramProbe | None = None,
    ) -> None:
        settings = Settings(
            self_update=self_update, program=check_relative(program.lstrip("/"), "program path"),
            protected=tuple(protected), probation=probation, start_timeout=start_timeout,
            hook_timeout=hook_timeout, stop_timeout=stop_timeout, reserved=dict(reserved or {}),
            sleep=sleep, clock=clock,
            trust_files=tuple(Path(p) for p in trust_files), free_space=free_space, space_margin=space_margin,
            compatible=compatible, disrupt=disrupt, probe=probe,
        )
        self._ctx = Context(Path(root), Path(state_dir), flister, supervisor, settings)
        self.root, self.state_dir = self._ctx.root, self._ctx.state_dir
        self.flister, self.supervisor = flister, supervisor
        self.journal, self.manifests = self._ctx.journal, self._ctx.manifests
        self.last_report: UpgradeReport | None = None

    # ============================================================== public API

    def installed_boot(self) -> Manifest | None:
        return self._ctx.installed_boot()

    def installed_bins(self) -> dict[str, Manifest]:
        return self._ctx.installed_bins()

    async def install(self, release: VerifiedRelease) -> UpgradeReport:
        """Install a verified release: the boot release (also a first install) or one bins package."""
        from zos_upgrade.upgrade.steps import Transaction

        self._refuse_open_journal()
        tx = Transaction(UpgradeReport(_KIND_OF[release.target], "", release.version))
        tx.know(self._ctx, release)
        return await self._run(tx, "preflight")

    async def install_from(self, source: ReleaseSource[C], candidate: C, target: Target) -> UpgradeReport:
        """Let ``source`` verify ``candidate`` as the first part of the fetch step, then install it.

        A candidate the source rejects is refused like any fetch failure: ReleaseRefused at step
        ``fetch``, recorded in ``last-transaction.json``, the node unchanged.
        """
        from zos_upgrade.upgrade.steps import Transaction

        self._refuse_open_journal()
        # until the source says which bins package it is, only the boot release's version is known
        old = self.installed_boot() if target == "boot" else None
        report = UpgradeReport(_KIND_OF[target], old.version if old else "", "")
        return await self._run(Transaction(report, verify=lambda: source.verify(candidate, target)),
                               "preflight")

    async def rollback(self, identify: Callable[[Manifest, Path], str], *,
                       block_store: str | None = None) -> UpgradeReport:
        """Back to the previous boot release, with no download (``rollback.py``).

        ``identify`` names a release (its manifest and kept flist file) as the failed-release memory
        does: the commit holds the release rolled back from and forgets the one gone back to.
        RollbackRefused (nothing changed) when there is no previous release or its flist file is not
        kept; otherwise the transaction's own errors (ReleaseRefused, RolledBack, ...).
        """
        from zos_upgrade.upgrade.steps import Transaction

        self._refuse_open_journal()
        current, previous = rollback_target(self._ctx)
        to_release = kept_release(self._ctx, previous, block_store)
        from_release = kept_release(self._ctx, current, block_store)
        report = UpgradeReport("rollback", current.version, previous.version)
        tx = Transaction(report, from_release=from_release,
                         holds=Holds(remember=identify(current, from_release.flist),
                                     forget=identify(previous, to_release.flist)))
        tx.know(self._ctx, to_release)
        return await self._run(tx, "preflight")

    async def uninstall_binary(self, fqdn: str) -> UpgradeReport:
        """Remove a bins package using OUR manifest (the hub may not list it any more)."""
        from zos_upgrade.upgrade.steps import Transaction

        old, plan = self._uninstall_plan(fqdn)
        self._refuse_open_journal()
        tx = Transaction(UpgradeReport("bin-uninstall", old.version, ""), key=fqdn, old=old, plan=plan)
        return await self._run(tx, "preflight")

    async def preview_from(self, source: ReleaseSource[C], candidate: C, target: Target) -> Preview:
        """What :meth:`install_from` would do, changing nothing (``zos-upgrade check``): ``source``
        verifies ``candidate`` into ITS downloads folder (give it one outside the state directory);
        the plan comes from the flist's entries, no block is fetched (``preview.py``)."""
        from zos_upgrade.upgrade.preview import preview_release

        return await preview_release(self._ctx, await source.verify(candidate, target))

    async def preview_uninstall(self, fqdn: str) -> Preview:
        """What :meth:`uninstall_binary` would do, changing nothing."""
        from zos_upgrade.upgrade.preview import preview_uninstall

        old, plan = self._uninstall_plan(fqdn)
        return await preview_uninstall(self._ctx, old, plan)

    async def recover(self) -> str | None:
        """Finish what a previous process left: roll forward, continue after self-update, or roll back.

        Returns what was done (None when there was no journal). Raises RollbackIncomplete when a
        rollback itself could not complete (the journal stays; the next call tries again), and
        JournalUnreadable when the journal cannot be read (:meth:`restore_from_backup` is the way out).
        """
        await asyncio.to_thread(self.flister.sweep)
        await asyncio.to_thread(self._sweep_temps)
        record = self.journal.load()
        if record is None:
            await asyncio.to_thread(self._ctx.drop_backups)
            return None
        log.warning("unfinished transaction found", extra={"phase": record.phase.value, "id": record.id})
        if record.phase is Phase.COMMITTED:
            await outcome.roll_forward(self._ctx)
            return f"rolled forward: committed {record.to_version or 'uninstall of ' + record.target_key}"
        if record.phase is Phase.ROLLING_BACK:
            await outcome.undo(self._ctx)
            reason = record.failure.reason if record.failure else "unknown"
            return f"rolled back to {record.from_version or 'nothing'}: {reason}"
        if record.phase is Phase.SELF_UPDATED:
            return await self._continue_after_self_update(record)
        reason = f"the upgrader stopped in phase {record.phase.value!r} (crash or kill)"
        await outcome.roll_back(self._ctx, "recovery", reason)
        return f"rolled back to {record.from_version or 'nothing'}: {reason}"

    async def restore_from_backup(self) -> RestoreReport:
        """An unreadable journal: put the node back on its committed manifests from the backup, or
        RestoreRefused (nothing changed) saying why that is not possible (``upgrade/restore.py``)."""
        return await restore_from_backup(self._ctx)

    def sync_boot_files(self) -> None:
        """Rewrite the boot files from the manifests (they are a view; the manifests are the truth)."""
        outcome.sync_boot_files(self._ctx)

    # ============================================================== internals

    def _uninstall_plan(self, fqdn: str) -> tuple[Manifest, Plan]:
        split_fqdn(fqdn)
        old = self.manifests.load(fqdn)
        if old is None:
            raise UpgradeError(
                f"bins package {fqdn} is not installed (no manifest in {self.manifests.bins_dir})"
            )
        plan = make_plan(
            old_files=old.files, old_services=old.services, new_files={}, new_services={},
            node=self._ctx.files.record, protected=self._ctx.settings.protected, program=None,
            require_services=False, source=fqdn, owned_elsewhere=self._ctx.owned_elsewhere(fqdn),
            reserved=self._ctx.reserved,
        )
        return old, plan

    async def _run(self, tx: Transaction, start: str) -> UpgradeReport:
        from zos_upgrade.upgrade.steps import run_steps

        try:
            await run_steps(self._ctx, tx, start)
        except (RolledBack, ReleaseRefused):
            await self._release(tx)  # the node is back on its old release: steady
            raise
        # any other failure (a rollback that did not finish, past the commit point, a self-update
        # exit) leaves the node unsteady: the slot stays held until the recovery (the daemon's start)
        await self._release(tx)
        plan, report = tx.planned, tx.report
        report.files_added, report.files_replaced, report.files_removed = (
            len(plan.add), len(plan.replace), len(plan.remove))
        report.services_restarted = plan.services_restart + plan.services_start
        self.last_report = report
        log.info("transaction committed", extra={"kind": report.kind, "from": report.from_version,
                                                 "to": report.to_version})
        return report

    async def _release(self, tx: Transaction) -> None:
        gate = self._ctx.settings.disrupt
        if tx.slot and gate is not None:
            await gate.release()

    async def _continue_after_self_update(self, record: JournalRecord) -> str:
        """Re-mount the release from the flist file the journal names (no network: the source
        checked it before the plan; its md5 is checked again here) and continue after self."""
        from zos_upgrade.upgrade.steps import Transaction

        report = UpgradeReport(record.kind, record.from_version, record.to_version)
        try:
            release = await asyncio.to_thread(self._kept_release, record)
            mount = await self._remount(release, record)
        except (ZosUpgradeError, OSError) as exc:
            reason = f"cannot continue after self-update: {type(exc).__name__}: {exc}"
            await outcome.roll_back(self._ctx, "fetch", reason)
            return f"rolled back to {record.from_version or 'nothing'}: {reason}"
        tx = Transaction(report, key=record.target_key, release=release, tree=mount.path, plan=record.plan,
                         new_manifest=_decode_manifest(record.new_manifest))
        try:
            await self._run(tx, "save-data")
        except RolledBack as exc:
            return f"continued after self-update, failed at {exc.step}, rolled back: {exc.reason}"
        return f"continued after self-update: committed {record.to_version}"

    async def _remount(self, release: VerifiedRelease, record: JournalRecord) -> Mount:
        """The staged part of the release again, as the plan staged it: its added and replaced paths
        and what the transaction reads (control files, services); blocks from the node's files (the
        installed manifest is still the old one) and the cache, which kept every block fetched."""
        from zos_upgrade.upgrade.staging import installed_blocks, node_blocks_of, resume_only

        only = resume_only(_decode_manifest(record.new_manifest), record.plan.add + record.plan.replace)
        old = self.manifests.load(record.target_key)
        local = node_blocks_of(self.root, installed_blocks(self.flister.downloads_dir, old))
        try:
            return await self.flister.mount(release, check=lambda _reader: Partial(only, local))
        finally:
            if local is not None:
                local.close()

    def _kept_release(self, record: JournalRecord) -> VerifiedRelease:
        """The release a journal was planned for, from its kept flist file (md5 re-checked)."""
        manifest = _decode_manifest(record.new_manifest)
        if manifest is None:
            raise UpgradeError(f"{self.journal.path}: a self-update journal without the new manifest")
        # journals of upgraders before the release sources name no file: the sources' naming rule
        flist = self.flister.downloads_dir / record.mount_md5
        if record.flist_file:
            flist = self.state_dir / record.flist_file  # relative, unless it was outside the state dir
        check_kept_flist(flist, record.mount_md5, f"release {record.source}", "the plan")
        return VerifiedRelease(
            target=manifest.kind, fqdn=manifest.fqdn, version=manifest.version, source=record.source,
            flist=flist, md5=record.mount_md5, verified_by="md5 recorded in the journal",
            info=manifest.info, block_store=record.block_store,
        )

    def _sweep_temps(self) -> None:
        """Temp files of atomic writes a kill cut short: journal, results, manifests, boot files, and
        the supervisor's service configs."""
        boot_dir = Boot(self.root).name_file.parent
        folders = (self.state_dir, self.manifests.root, self.manifests.bins_dir, self.manifests.previous_dir,
                   self.manifests.previous_dir / "bins", boot_dir)
        removed = [p for folder in folders for p in sweep_temps(folder)]
        removed += self.supervisor.sweep_config_temps()
        if removed:
            log.info("temp files of interrupted writes removed", extra={"paths": [str(p) for p in removed]})

    def _refuse_open_journal(self) -> None:
        if self.journal.open or self.journal.load() is not None:
            raise UpgradeError(f"{self.journal.path}: an unfinished transaction exists; call recover() first")


def _decode_manifest(text: str) -> Manifest | None:
    return msgspec.json.decode(text, type=Manifest) if text else None

