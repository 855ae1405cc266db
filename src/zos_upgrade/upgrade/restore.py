"""The way out of an unreadable journal: put the node back on its committed manifests from the backup.

A truncated or corrupt ``journal.json`` says nothing about what the interrupted transaction
changed, so recovery cannot run and every start refuses. What is still known: the committed
manifests (every file of the installed releases with its hash), the backup (the old inode of every
file the transaction replaced or removed) and the staged tree of the release it was installing
(``<state>/mounts/<md5>`` of a release no manifest names). That is enough to go back:

* a file of a manifest whose node copy differs is restored from the backup when the backup holds
  exactly the committed content; a missing directory is made again;
* a file of the staged tree that no manifest owns and that is on the node with exactly the staged
  content was added by the transaction: it is removed (anything else is left alone). The files the
  interrupted apply already moved onto the node are no longer in the staged tree (``nodefs.py``):
  the apply recorded them, with their planned records, before it moved any (``NodeFS.note_added``);
* the installed releases' services get their configs again and are restarted.

Everything is checked before anything changes: a file whose committed content is nowhere (neither
on the node nor in the backup), a journal that is readable (the daemon recovers that one itself), no
journal, no committed release or a supervisor that does not answer refuse with the reason and leave
the node as it was. The unreadable journal is kept beside as ``journal.json.unreadable-<time>``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field

import zos_upgrade.upgrade.services as svc
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import fsync_dir
from zos_upgrade.upgrade.context import Context
from zos_upgrade.upgrade.errors import JournalUnreadable, UpgradeError
from zos_upgrade.upgrade.manifest import FileRecord, Manifest, record_of, scan_release
from zos_upgrade.upgrade.outcome import sync_boot_files, write_result_doc

__all__ = ["RestoreRefused", "RestoreReport", "plan_restore", "restore_from_backup"]

log = logging.getLogger(__name__)

_SHOWN = 10  # files named in a refusal; the count says how many more


class RestoreRefused(UpgradeError):
    """The node cannot be put back on its committed manifests (the message says why); nothing changed."""


@dataclass
class RestoreReport:
    """What restoring did (or, from :func:`plan_restore`, will do)."""

    journal_error: str
    restore: list[str] = field(default_factory=list)      # renamed back from the backup
    make_dirs: list[tuple[str, int]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)       # added by the interrupted transaction
    drop_dirs: list[str] = field(default_factory=list)    # its directories, removed when left empty
    services: list[str] = field(default_factory=list)     # configs installed again and restarted
    kept_journal: str = ""


def _manifests(ctx: Context) -> dict[str, Manifest]:
    try:
        boot = ctx.installed_boot()
        found = {"boot": boot} if boot is not None else {}
        return {**found, **ctx.installed_bins()}
    except ZosUpgradeError as exc:
        raise RestoreRefused(f"cannot read the committed manifests in {ctx.manifests.root}: {exc}") from exc


def plan_restore(ctx: Context) -> RestoreReport:
    """Everything restoring will do, or RestoreRefused naming why it cannot; reads only."""
    path = ctx.journal.path
    if not os.path.lexists(path):
        raise RestoreRefused(f"{path} does not exist: there is no interrupted transaction to undo")
    try:
        ctx.journal.load()
    except JournalUnreadable as exc:
        journal_error = str(exc)
    else:
        raise RestoreRefused(f"{path} is readable: start the daemon, its recovery finishes the transaction "
                             "exactly (this command is for a journal that cannot be read)")
    manifests = _manifests(ctx)
    if not manifests:
        raise RestoreRefused(f"no committed manifest in {ctx.manifests.root}: there is no release to go "
                             "back to (a first install that was interrupted; reinstall the node)")
    report = RestoreReport(journal_error)
    lost: list[str] = []
    owned: set[str] = set()
    for manifest in manifests.values():
        for rel, want in sorted(manifest.files.items()):
            owned.add(rel)
            if ctx.files.record(rel) == want:
                continue
            if want.kind == "dir":
                report.make_dirs.append((rel, want.mode))
            elif _same(record_of(ctx.files.backup_path(rel)), want):
                report.restore.append(rel)
            else:
                lost.append(rel)
    if lost:
        more = f" and {len(lost) - _SHOWN} more" if len(lost) > _SHOWN else ""
        raise RestoreRefused(
            f"cannot put the node back on its committed release: {len(lost)} file(s) differ from the "
            f"manifests and the backup {ctx.files.backup_root} holds no copy with the committed content: "
            f"{', '.join('/' + r for r in lost[:_SHOWN])}{more}; nothing was changed"
        )
    report.remove, dirs = _added(ctx, manifests, owned)
    report.drop_dirs = sorted(dirs - owned, key=lambda d: (-d.count("/"), d))  # deepest first
    report.services = sorted({name for m in manifests.values() for name in m.services})
    return report


def _same(found: FileRecord | None, want: FileRecord) -> bool:
    return found is not None and (found.kind, found.digest, found.size) == (want.kind, want.digest, want.size)


def _added(ctx: Context, manifests: dict[str, Manifest], owned: set[str]) -> tuple[list[str], set[str]]:
    """Files of staged trees of releases no manifest names, or recorded as added by the interrupted
    apply, on the node with that content; and the directories of those trees (removed only when left
    empty)."""
    installed = {m.md5 for m in manifests.values()}
    mounts = ctx.flister.mounts_dir
    candidates = list(ctx.files.noted_added().items())
    dirs: set[str] = set()
    for tree in sorted(mounts.iterdir()) if mounts.is_dir() else []:
        if tree.name in installed or tree.name.startswith(".") or not tree.is_dir():
            continue
        files, _services = scan_release(tree)
        dirs.update(rel for rel, staged in files.items() if staged.kind == "dir")
        candidates += [(rel, staged) for rel, staged in files.items() if staged.kind != "dir"]
    added: list[str] = []
    for rel, staged in candidates:
        if rel in owned:
            continue
        try:
            if ctx.files.record(rel) == staged:
                added.append(rel)
        except ZosUpgradeError:  # its directory leads out of the node: not ours to remove
            continue
    return sorted(set(added)), dirs


async def restore_from_backup(ctx: Context, *, clock: float | None = None) -> RestoreReport:
    """Check (:func:`plan_restore`), then put the node back on its committed manifests."""
    report = plan_restore(ctx)
    manifests = _manifests(ctx)
    try:
        await ctx.supervisor.list()
    except (ZosUpgradeError, OSError) as exc:
        raise RestoreRefused(f"the supervisor does not answer ({type(exc).__name__}: {exc}): the services "
                             "could not be restarted; nothing was changed") from exc
    log.warning("restoring the committed release from the backup", extra={
        "journal_error": report.journal_error, "restore": len(report.restore), "remove": len(report.remove)})
    await asyncio.to_thread(_apply_files, ctx, report)
    services = {name: text for m in manifests.values() for name, text in m.services.items()}
    if not ctx.configs_are_files:
        await svc.install_configs(ctx.supervisor, services, report.services)
    await svc.restart_services(ctx.supervisor, report.services, **ctx.pace())
    # only now, with files and services back: a failure above leaves the journal, the command reruns
    stamp = int(clock if clock is not None else time.time())
    kept = ctx.journal.path.with_name(f"{ctx.journal.path.name}.unreadable-{stamp}")
    os.replace(ctx.journal.path, kept)
    fsync_dir(kept.parent)
    report.kept_journal = str(kept)
    await asyncio.to_thread(ctx.drop_backups)
    sync_boot_files(ctx)
    boot = manifests.get("boot")
    write_result_doc(ctx, {"kind": "restore", "from_version": "", "to_version": boot.version if boot else "",
                       "result": "restored-from-backup", "reason": report.journal_error, "time": time.time()})
    log.warning("committed release restored from the backup", extra={"kept_journal": str(kept)})
    return report


def _apply_files(ctx: Context, report: RestoreReport) -> None:
    files = ctx.files
    for rel in report.remove:  # first: on a full disk that frees the space the restores need
        files.remove(rel)
    for rel, mode in sorted(report.make_dirs):
        files.make_dir(rel, mode)
    for rel in report.restore:
        files.restore(rel)
    for rel in report.drop_dirs:
        files.remove_dir_if_empty(rel)
