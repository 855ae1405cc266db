"""How a transaction ends: rolled BACK to the old release, rolled FORWARD past the commit point, or refused.

Rollback (any failure or crash before the commit point): services of the new release stopped, the
hooks' data restored, added files removed, replaced and removed files renamed back from the backup,
old configs reinstalled and old services restarted. Every part is idempotent, so a crash while
undoing is undone again at the next start (journal phase ``rolling-back``).

Roll-forward (the journal says ``committed``: it carries the new manifest): keep the manifest it
replaces as the previous one (the rollback target), write the manifest and the boot files, drop the
backup, prune old mounts, record a rollback's holds in the failed-release memory, delete the
journal. Also idempotent.

Each outcome is recorded in ``<state>/last-transaction.json`` (what the last transaction did and
why) and appended to the bounded history ``<state>/transactions.json`` (``status`` shows both).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

import zos_upgrade.upgrade.services as svc
from zos_upgrade.fsutil import atomic_write_json
from zos_upgrade.hub.models import FlistInfo
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.events import FListEvent
from zos_upgrade.node.failed import FailedReleases, FailedReleasesError
from zos_upgrade.node.history import append_transaction
from zos_upgrade.node.infofile import decode_info
from zos_upgrade.upgrade.context import Context
from zos_upgrade.upgrade.crash import crash_point
from zos_upgrade.upgrade.errors import ReleaseRefused, RollbackIncomplete
from zos_upgrade.upgrade.journal import Holds, JournalRecord, Phase
from zos_upgrade.upgrade.manifest import Manifest
from zos_upgrade.upgrade.plan import Plan
from zos_upgrade.upgrade.report import UpgradeReport

__all__ = ["LAST_RESULT", "refused", "roll_back", "roll_forward", "sync_boot_files", "undo",
           "write_result_doc"]

log = logging.getLogger(__name__)

LAST_RESULT = "last-transaction.json"


async def roll_back(ctx: Context, step: str, reason: str) -> None:
    """Record why, then undo; RollbackIncomplete when undoing fails (the journal stays for a retry)."""
    ctx.journal.begin_rollback(step, reason)
    try:
        await undo(ctx)
    except (Exception, asyncio.CancelledError) as exc:
        log.error("rollback failed; it is retried at the next start",
                  extra={"step": step, "error": f"{type(exc).__name__}: {exc}"})
        raise RollbackIncomplete(f"{reason}; rollback failed: {type(exc).__name__}: {exc}",
                                 step=step) from exc


async def undo(ctx: Context) -> None:
    """Put the node back exactly on the old release. Every step is idempotent (crash-safe)."""
    record = ctx.journal.record
    plan = record.plan
    failure = record.failure
    touched_services = failure is None or failure.from_phase not in (Phase.PLANNED, Phase.SELF_UPDATED)
    old = ctx.manifests.load(record.target_key)
    old_services = old.services if old else {}
    pace = ctx.pace()
    if touched_services:
        await svc.stop_services(ctx.supervisor, plan.services_start + plan.services_restart, **pace)
    # the hooks' data first: removing what they created may empty a directory the release added
    await asyncio.to_thread(ctx.data.restore_all, record.data_saved)
    await asyncio.to_thread(_restore_files, ctx, plan, old)
    crash_point("mid-rollback")
    if touched_services:
        added = [n for n in plan.services_start if n not in old_services]
        await svc.remove_services(ctx.supervisor, added, **pace, remove_configs=not ctx.configs_are_files)
        if not ctx.configs_are_files:
            configs = [n for n in plan.services_config + plan.services_remove if n in old_services]
            await svc.install_configs(ctx.supervisor, old_services, configs)
        again = [n for n in plan.services_restart + plan.services_remove if n in old_services]
        await svc.restart_services(ctx.supervisor, again, **pace)
    await asyncio.to_thread(ctx.drop_backups)
    failure_doc = {"step": failure.step, "reason": failure.reason} if failure else {}
    _write_result(ctx, record, "rolled-back", **failure_doc)
    ctx.journal.finish()
    log.warning("transaction rolled back", extra={"kind": record.kind, "version": record.from_version,
                                                  **failure_doc})


def _restore_files(ctx: Context, plan: Plan, old: Manifest | None) -> None:
    files = ctx.files
    # added files go first: on a full disk that frees the space the restores need
    files.clear_temps(plan.touched_paths)
    for rel in plan.add:
        files.remove(rel)
    for rel in reversed(plan.dirs_add):
        files.remove_dir_if_empty(rel)
    for rel in sorted(plan.dirs_remove):
        mode = old.files[rel].mode if old and rel in old.files else 0o755
        files.make_dir(rel, mode)
    for rel in plan.replace + plan.remove:
        files.restore(rel)


async def roll_forward(ctx: Context) -> None:
    """Finish a committed transaction: manifest, boot files, backups, old mounts, journal."""
    record = ctx.journal.record
    if record.new_manifest:
        new = record.new_manifest.encode()
        ctx.manifests.keep_previous(record.target_key, new)
        ctx.manifests.save_text(record.target_key, new)
    else:
        ctx.manifests.remove(record.target_key)
    crash_point("after-manifest")
    sync_boot_files(ctx)
    crash_point("after-boot-files")
    await asyncio.to_thread(ctx.drop_backups)
    # every mount goes, the installed release's too: its files are on the node now, and nothing
    # reads a mount after its transaction (a later one mounts afresh; a mount is never reused), so
    # keeping it only kept a second copy of what the transaction staged
    await asyncio.to_thread(ctx.flister.prune, set())
    if record.holds is not None:
        _record_holds(ctx, record, record.holds)
    _write_result(ctx, record, "committed")
    ctx.journal.finish()


def _record_holds(ctx: Context, record: JournalRecord, holds: Holds) -> None:
    """A committed rollback: the release rolled back from is held, the one rolled back to is not.

    An unreadable memory is logged, not raised: the rollback is done, and a damaged memory already
    holds every release back (``daemon/memory.py``) until it is cleared."""
    memory = FailedReleases(ctx.state_dir)
    try:
        memory.clear(holds.forget)
        memory.remember(holds.remember, what=f"boot release {record.from_version}, rolled back",
                        version=record.from_version, step="rollback",
                        reason=f"rolled back to {record.to_version or 'nothing'} by `zos-upgrade rollback`")
    except (OSError, FailedReleasesError) as exc:
        log.error("cannot record the rolled-back release as held", extra={"release": holds.remember,
                                                                          "error": str(exc)})


def sync_boot_files(ctx: Context) -> None:
    """Rewrite the boot files from the manifests (they are a view; the manifests are the truth)."""
    boot = Boot(ctx.root)
    manifest = ctx.installed_boot()
    if manifest is not None:
        repo, _ = split_fqdn(manifest.fqdn)
        boot.set(FListEvent(repo, _flist_info(manifest)))
    bins = ctx.installed_bins()
    if bins or boot.bins_file.exists():
        boot.set_bins({key: _flist_info(m) for key, m in bins.items()})


def refused(ctx: Context, report: UpgradeReport, step: str, exc: BaseException) -> ReleaseRefused:
    """The error for a release refused at ``step`` (fetch or plan), recorded; the node is unchanged."""
    reason = f"{type(exc).__name__}: {exc}"
    log.error("release refused; node unchanged", extra={"step": step, "reason": reason})
    write_result_doc(ctx, {"kind": report.kind, "from_version": report.from_version,
                            "to_version": report.to_version, "result": "refused", "step": step,
                            "reason": reason, "time": time.time()})
    return ReleaseRefused(reason, step=step, report=report)


def _write_result(ctx: Context, record: JournalRecord, result: str, **extra: str) -> None:
    write_result_doc(ctx, {"kind": record.kind, "from_version": record.from_version,
                            "to_version": record.to_version, "result": result, "time": time.time(),
                            **extra})


def write_result_doc(ctx: Context, doc: dict[str, Any]) -> None:
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ctx.state_dir / LAST_RESULT, doc)
    try:
        append_transaction(ctx.state_dir, doc)
    # a report: it must not turn a finished transaction into a failure
    except (OSError, msgspec.ValidationError) as exc:
        log.error("cannot append to the transaction history", extra={"error": str(exc)})


def _flist_info(manifest: Manifest) -> FlistInfo:
    return decode_info(msgspec.json.encode(manifest.info))
