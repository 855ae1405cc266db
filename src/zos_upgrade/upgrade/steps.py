"""The transaction as data: SPEC 11 top to bottom in :data:`STEPS`, run by one loop (:func:`run_steps`).

Each row names the step (as failures, reports and ``last-transaction.json`` name it), what a
failure in it means, the journal phase recorded before and after it, and the crash point right
after it. The journal records every step durably before the next one begins; crash points are
where the proof suite kills the process (``crash.py``; ``mid-apply``, ``after-manifest`` and
``after-boot-files`` are inside their steps).

``fetch`` plans from the flist before any block is fetched: its entries against the installed
manifest and the node (``staging.py``) say which files changed, and only those (with the hooks,
``hooks.paths`` and service configs the later steps read) are staged into the mount; ``plan``
builds the new manifest from the entries and the staged files' digests, and the plan from it.
The staged tree therefore holds only what changed: a hook finds the release's control files and
changed files under ``$ZOS_RELEASE``, not the unchanged ones (they are on the node already).

A failure in ``preflight``, ``fetch`` or ``plan`` refuses the release (nothing on the node changed
yet). ``preflight`` checks the supervisor and the trust material before anything is downloaded;
``plan`` ends with the disk-space preflight, the first moment the sizes are known (``preflight.py``).
A failure from ``self`` to ``post-start`` rolls BACK (``outcome.roll_back``). **The commit point** is the
durable journal record ``committed`` before ``commit``: it carries the new manifest, so everything
after it is idempotent roll-forward work, and a failure there is finished at the next start. The
one exception to "before the commit point rolls back" is ``self``: the upgrader replaced its own
program, ``program-start`` proved the new one starts (``probe.py``; if not, it rolls back), and the
process exits (``RestartNeeded``); the next process finds the journal and continues the table from
``save-data``.

``lock`` runs only when the daemon injected a disrupt gate (``fleet_lock``: a FleetLock slot): it
waits there, with the hooks' pre-copy work done but nothing stopped, and the slot is given back when
the transaction is steady again (committed, or completely rolled back: ``Upgrader._run``).

A rollback (``rollback.py``) runs the same table with kind ``rollback``: the forward hooks are
skipped and the ``rollback`` row runs the hook of the release rolled back from instead. (One table
and its step functions in one module, about 500 lines: each row reads next to what it does.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

import zos_upgrade.upgrade.services as svc
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.sources.base import VerifiedRelease
from zos_upgrade.upgrade.compat import check_compatible, compatible_of
from zos_upgrade.upgrade.context import Context
from zos_upgrade.upgrade.crash import crash_point
from zos_upgrade.upgrade.datapaths import read_data_paths, state_relative
from zos_upgrade.upgrade.errors import RestartNeeded, RollbackIncomplete, RolledBack
from zos_upgrade.upgrade.flister import Mount, Partial
from zos_upgrade.upgrade.hooks import run_hook
from zos_upgrade.upgrade.journal import Holds, JournalRecord, Phase
from zos_upgrade.upgrade.kept_blocks import keep_blocks_of
from zos_upgrade.upgrade.manifest import FileRecord, Manifest
from zos_upgrade.upgrade.nodefs import check_applied
from zos_upgrade.upgrade.outcome import refused, roll_back, roll_forward
from zos_upgrade.upgrade.plan import Plan, make_plan
from zos_upgrade.upgrade.preflight import check_room, check_supervisor, check_trust_files, transaction_sizes
from zos_upgrade.upgrade.release_entries import ReleaseEntries, read_entries
from zos_upgrade.upgrade.report import UpgradeReport
from zos_upgrade.upgrade.rollback import ROLLBACK_HOOK, mount_rolled_from
from zos_upgrade.upgrade.staging import (
    FileBlocks,
    Staging,
    choose,
    control_only,
    installed_blocks,
    node_blocks_of,
)
from zos_upgrade.upgrade.stamps import STAMPS_FILE, UNSTAMPED, NodeStamps

if TYPE_CHECKING:
    from zos_upgrade.flist import FlistReader  # annotations only: the block stack loads at a mount
    from zos_upgrade.flist.filewrite import WrittenFile

PROBE_MARKER = "program-probe.json"  # in the state dir: where the probed program writes its marker

__all__ = ["STEPS", "OnFailure", "Step", "Transaction", "run_steps"]

log = logging.getLogger(__name__)


@dataclass
class Transaction:
    """One run through the table: what it installs and what the steps learnt so far."""

    report: UpgradeReport
    key: str = ""                                  # the manifest it replaces ("boot" or a bins fqdn)
    release: VerifiedRelease | None = None         # None: an uninstall, or not verified yet
    verify: Callable[[], Awaitable[VerifiedRelease]] | None = None  # the source's check, in fetch
    old: Manifest | None = None                    # what is installed now under ``key``
    tree: Path | None = None                       # the staged release (None: an uninstall)
    digests: dict[str, WrittenFile] | None = None  # its files' digests, taken as the mount wrote them
    staging: Staging | None = None                 # what fetch staged and the new records (plan)
    installed: dict[str, FileBlocks] | None = None  # the installed files' blocks (fetch)
    entries: ReleaseEntries | None = None           # the release's flist entries (fetch)
    plan: Plan | None = None                       # set by plan (an uninstall comes planned)
    new_manifest: Manifest | None = None           # what commit records (None: an uninstall)
    from_release: VerifiedRelease | None = None    # a rollback: the release rolled back from (its hooks)
    from_tree: Path | None = None                  # ... and its mounted tree
    holds: Holds | None = None                     # a rollback: what its commit holds and forgets
    slot: bool = False                             # the disrupt gate let it in: release when steady
    keeping: asyncio.Future[None] | None = None     # blocks kept for a rollback, from the backup
    stamps: NodeStamps | None = None               # the apply's, with stamps the commit confirms

    def know(self, ctx: Context, release: VerifiedRelease) -> None:
        """The release is verified: from here the transaction knows what it replaces."""
        self.release, self.key = release, release.key
        self.old = ctx.manifests.load(release.key)
        self.report.from_version = self.old.version if self.old else ""
        self.report.to_version = release.version

    @property
    def planned(self) -> Plan:
        if self.plan is None:
            raise ZosUpgradeError("internal: a step after plan ran without a plan")
        return self.plan


class OnFailure(StrEnum):
    REFUSE = "refuse"              # nothing changed yet: ReleaseRefused, recorded as "refused"
    ROLL_BACK = "roll back"        # undo to the old release: RolledBack (or RollbackIncomplete)
    ROLL_FORWARD = "roll forward"  # past the commit point: raised as is; recover() finishes it


StepRun = Callable[[Context, Transaction], Awaitable[None]]
When = Callable[[Context, Transaction], bool]


def _always(_ctx: Context, _tx: Transaction) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    name: str
    run: StepRun
    on_failure: OnFailure
    phase_before: Phase | None = None  # recorded before the step runs
    phase_after: Phase | None = None   # recorded when it is done (``planned``: the journal begins)
    crash_after: str | None = None     # the crash point right after that record
    when: When = _always               # steps that only some transactions need
    exits: bool = False                # after it, the process must exit (RestartNeeded)


# ------------------------------------------------------------------ the steps


async def _preflight(ctx: Context, _tx: Transaction) -> None:
    """Before anything is downloaded: the supervisor answers, the trust material is readable."""
    await check_supervisor(ctx.supervisor)
    await asyncio.to_thread(check_trust_files, ctx.settings.trust_files)


def _needs_fetch(_ctx: Context, tx: Transaction) -> bool:
    return tx.plan is None  # an uninstall comes planned: there is nothing to fetch


async def _preflight_space(ctx: Context, tx: Transaction) -> None:
    """Once the sizes are known: room for the staged new files and for the backup."""
    settings, node_path = ctx.settings, ctx.files.node_path
    staged, kept = await asyncio.to_thread(transaction_sizes, tx.planned, tx.new_manifest, node_path)
    await asyncio.to_thread(check_room, root=ctx.root, state_dir=ctx.state_dir, staged=staged, backed_up=kept,
                            free_space=settings.free_space, margin=settings.space_margin)


async def _fetch(ctx: Context, tx: Transaction) -> None:
    """The source verifies its candidate (when asked to); a release for other nodes is refused
    before any block is fetched (``compat.py``); then the flist's entries are compared with the
    installed manifest and the node (``staging.py``), and only what the transaction stages is
    materialized into <state>/mounts, every block checked: from the node's own files where they
    hold it, else the cache, else the store. Nothing on the node changes."""
    if tx.verify is not None:
        tx.know(ctx, await tx.verify())
    release, old = tx.release, tx.old
    if release is None:
        raise ZosUpgradeError("internal: fetch without a release")
    # the node's installed files, hashed once off the event loop (the drift check; the plan reuses it)
    seen = await asyncio.to_thread(_node_records, ctx, old)
    installed = await asyncio.to_thread(installed_blocks, ctx.flister.downloads_dir, old, ctx.read_entries)
    tx.installed = installed

    def for_this_node(reader: FlistReader) -> Partial:
        check_compatible(compatible_of(reader.tags()), ctx.settings.compatible, release.source)
        found = read_entries(reader)
        ctx.read_entries.remember(release.md5, found)
        tx.entries = found
        tx.staging = choose(found, old, ctx.files.record_reader(), seen, installed)
        return Partial(tx.staging.only, local, keep_fetched=_replaces_program(ctx, release, tx.staging))

    local = node_blocks_of(ctx.root, installed)
    try:
        mount = await ctx.flister.mount(release, check=for_this_node)
    finally:
        if local is not None:
            local.close()
    tx.tree, tx.digests = mount.path, mount.digests
    _count_download(tx.report, mount)
    if local is not None:  # materialize counts them with the cache's: they are the node's
        tx.report.blocks_from_node += local.used
        tx.report.blocks_from_cache -= local.used
    if tx.from_release is not None:  # a rollback: the tree its ``rollback`` hook and hooks.paths come from
        mount = await ctx.flister.mount(tx.from_release, check=lambda _reader: Partial(control_only))
        tx.from_tree = mount.path
        _count_download(tx.report, mount)


def _replaces_program(ctx: Context, release: VerifiedRelease, staging: Staging) -> bool:
    """Whether this transaction will replace the upgrader's own program: then its continuation in
    the new program mounts the release again, and the blocks fetched are kept in the cache for it.
    Otherwise nothing mounts this release again and a fetched block is written once, into its file
    (the cache holds no second copy of the release)."""
    settings = ctx.settings
    return settings.self_update and release.target == "boot" and settings.program in staging.staged


def _node_records(ctx: Context, old: Manifest | None) -> dict[str, FileRecord | None]:
    """What the node holds at each path of the installed manifest. Files whose stamp still holds
    are not read (``stamps.py``); the others are hashed on every core (blake2b releases the GIL)."""
    rels = [rel for rel, rec in (old.files if old else {}).items() if rec.kind != "dir"]
    stamps = NodeStamps(ctx.state_dir / "cache" / STAMPS_FILE)
    paths = ctx.files.node_path_texts(rels)
    found: dict[str, FileRecord | None] = {}
    unstamped = []
    for rel in rels:
        known = stamps.stamped(rel, paths[rel])
        if known is UNSTAMPED:
            unstamped.append(rel)
        else:
            found[rel] = known
    found.update(_on_every_core(lambda rel: stamps.record(rel, paths[rel]), unstamped))
    stamps.save()
    return {rel: found[rel] for rel in rels}


def _on_every_core(record: Callable[[str], FileRecord | None],
                   rels: list[str]) -> dict[str, FileRecord | None]:
    """``record`` of each of ``rels``, in threads on every core past a few files."""
    if len(rels) < 64:
        return {rel: record(rel) for rel in rels}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(rels, pool.map(record, rels, chunksize=16), strict=True))


async def _plan(ctx: Context, tx: Transaction) -> None:
    """Compare the release with the manifest of what is installed and the node as it is; then the
    space preflight, which needs the plan's sizes, before the journal begins (``planned``)."""
    if tx.plan is None:
        tx.plan, tx.new_manifest = await asyncio.to_thread(_make_plan, ctx, tx)
    await _preflight_space(ctx, tx)
    if _updates_self(ctx, tx):  # this process exits before the backup: keep them from the node now
        await asyncio.to_thread(_keep_for_rollback, ctx, tx, ctx.root)


def _keep_for_rollback(ctx: Context, tx: Transaction, old_root: Path) -> None:
    """The blocks of the files the node loses (replaced or removed), read from ``old_root`` (the node
    before anything changed, or the backup, which holds their old inodes), and of the release's
    control files, kept in the cache for a later rollback (``kept_blocks.py``)."""
    plan, installed = tx.planned, tx.installed or {}
    keep_blocks_of(old_root, ctx.flister.cache,
                   {rel: installed[rel] for rel in plan.replace + plan.remove if rel in installed})
    if tx.entries is not None and tx.tree is not None:
        control = {rel: FileBlocks.of("", refs, lengths)
                   for rel, (refs, lengths) in tx.entries.control_blocks.items()}
        keep_blocks_of(tx.tree, ctx.flister.cache, control)


def _make_plan(ctx: Context, tx: Transaction) -> tuple[Plan, Manifest]:
    release, old, tree, staging = tx.release, tx.old, tx.tree, tx.staging
    if release is None or tree is None or staging is None:
        raise ZosUpgradeError("internal: plan before fetch")
    files, services = staging.finish(tree, tx.digests)
    tx.report.files_staged = len(staging.staged)
    tx.report.release_bytes = sum(record.size for record in files.values() if record.kind == "file")
    boot = release.target == "boot"
    owned_elsewhere = ctx.owned_elsewhere(release.key)
    settings = ctx.settings
    plan = make_plan(
        old_files=old.files if old else {}, old_services=old.services if old else {},
        new_files=files, new_services=services, node=staging.node(ctx.files.record_reader()),
        protected=settings.protected,
        program=settings.program if settings.self_update and boot else None,
        require_services=boot, source=release.source, owned_elsewhere=owned_elsewhere,
        reserved=ctx.reserved,
    )
    # before anything runs: a hostile hooks.paths refuses the release here (nothing changed yet)
    owned = {*files, *(old.files if old else {}), *owned_elsewhere}
    # the hooks that run declare the data they change: in a rollback, the release rolled back from
    hooks_tree = tx.from_tree if tx.from_release is not None else tree
    if hooks_tree is None:
        raise ZosUpgradeError("internal: a rollback planned without the tree it rolls back from")
    plan.data_paths = read_data_paths(hooks_tree, state_rel=state_relative(ctx.root, ctx.state_dir),
                                      owned=owned)
    for rel in plan.data_paths:
        ctx.data.check(rel)
    info = release.info if release.info.get("md5") else {**release.info, "md5": release.md5}
    manifest = Manifest(
        kind=release.target, fqdn=release.fqdn, source=release.source, version=release.version,
        md5=release.md5, info=info, files=files, services=services, installed=time.time(),
    )
    return plan, manifest


def _updates_self(ctx: Context, tx: Transaction) -> bool:
    return tx.tree is not None and tx.planned.program_update and ctx.settings.self_update


async def _self_update(ctx: Context, tx: Transaction) -> None:
    """Install our own new program (atomic rename); the supervisor restarts us after the exit."""
    program, new, tree = ctx.settings.program, tx.new_manifest, tx.tree
    if tree is None:
        raise ZosUpgradeError("internal: self-update without a release tree")
    ctx.files.backup(program)
    # a fresh node may lack the program's directory yet; rollback removes planned dirs again
    ancestors = set(Path(program).parents)
    for rel in tx.planned.dirs_add:
        if new is not None and Path(rel) in ancestors:
            ctx.files.make_dir(rel, new.files[rel].mode)
    ctx.files.apply(program, tree / program, new.files.get(program) if new else None)


async def _program_start(ctx: Context, _tx: Transaction) -> None:
    """The new program must start before we hand over to it (``probe.py``); a failure here is the
    release's own (its program cannot run), and the rollback puts the previous program back."""
    if ctx.settings.probe is not None:
        await ctx.settings.probe(ctx.files.node_path(ctx.settings.program), ctx.state_dir / PROBE_MARKER)


def _saves_data(ctx: Context, tx: Transaction) -> bool:
    return tx.tree is not None and bool(tx.planned.data_paths) and not ctx.journal.record.data_saved


async def _save_data(ctx: Context, tx: Transaction) -> None:
    """Copy the node data the hooks may change (``hooks.paths``), recorded before the first hook."""
    saved = await asyncio.to_thread(ctx.data.save_all, tx.planned.data_paths)
    ctx.journal.record_data_saved(saved)


def _hook(name: str) -> StepRun:
    async def run(ctx: Context, tx: Transaction) -> None:
        if tx.tree is None or _rolls_back(ctx, tx):  # forward hooks never run in a rollback
            return
        await run_hook(tx.tree, name, env=_hook_env(ctx, tx.tree), timeout=ctx.settings.hook_timeout)

    return run


def _hook_env(ctx: Context, tree: Path) -> dict[str, str]:
    record = ctx.journal.record
    return {
        "ZOS_ROOT": str(ctx.root),
        "ZOS_STATE_DIR": str(ctx.state_dir),
        "ZOS_RELEASE": str(tree),
        "ZOS_FROM_VERSION": record.from_version,
        "ZOS_TO_VERSION": record.to_version,
        "ZOS_TRANSACTION": record.kind,
    }


def _rolls_back(_ctx: Context, tx: Transaction) -> bool:
    return tx.report.kind == "rollback"


async def _rollback_hook(ctx: Context, tx: Transaction) -> None:
    """The ``rollback`` hook of the release rolled back from, while its files are still in place."""
    if tx.from_tree is None:  # continuing after self-update: mount it again (locally, from its kept file)
        tx.from_tree = (await mount_rolled_from(ctx)).path
    await run_hook(tx.from_tree, ROLLBACK_HOOK, env=_hook_env(ctx, tx.from_tree),
                   timeout=ctx.settings.hook_timeout)


def _gated(ctx: Context, _tx: Transaction) -> bool:
    return ctx.settings.disrupt is not None


async def _take_slot(ctx: Context, tx: Transaction) -> None:
    """Wait for the disrupt gate (a FleetLock slot) before the first service stops."""
    assert ctx.settings.disrupt is not None  # _gated
    await ctx.settings.disrupt.take()
    tx.slot = True


async def _stop(ctx: Context, tx: Transaction) -> None:
    await svc.stop_services(ctx.supervisor, tx.planned.to_stop, **ctx.pace())


async def _backup(ctx: Context, tx: Transaction) -> None:
    """Hard-link (or copy) every file to be replaced or removed into the backup."""
    plan = tx.planned

    def backup() -> None:
        for rel in plan.replace + plan.remove:
            ctx.files.backup(rel)

    await asyncio.to_thread(backup)


async def _kept(tx: Transaction) -> None:
    """Wait for the blocks being kept for a rollback (best effort: a failure is only logged)."""
    keeping, tx.keeping = tx.keeping, None
    if keeping is None:
        return
    try:
        await asyncio.shield(keeping)
    except asyncio.CancelledError:
        await asyncio.wait([keeping])  # the thread runs on: nothing may drop the backup under it
        raise
    except Exception as exc:  # a cache of blocks must never fail the transaction
        log.warning("blocks for a rollback not all kept", extra={"reason": f"{type(exc).__name__}: {exc}"})


async def _apply(ctx: Context, tx: Transaction) -> None:
    """Each file moved onto the node over the old one, removed files and dirs gone, every directory
    touched fsynced once; then each applied file checked once (a read only where its writer's digest
    cannot be taken: ``NodeStamps.handed``): that the node holds what was planned, and its stamp."""
    tx.stamps = await asyncio.to_thread(_apply_files, ctx, tx.tree, tx.planned, tx.new_manifest,
                                        tx.digests or {})
    if tx.installed is not None and not _updates_self(ctx, tx):
        # off the critical path: sealing the old content (~10 ms of CPU for ten files) while the
        # restart and the probation wait for the supervisor (during the apply it would only slow
        # it down); from the backup, whose inodes do not change until the commit or a rollback
        # (both wait for it first: ``_kept``)
        tx.keeping = asyncio.ensure_future(
            asyncio.to_thread(_keep_for_rollback, ctx, tx, ctx.files.backup_root))


def _apply_files(ctx: Context, tree: Path | None, plan: Plan, new: Manifest | None,
                 written: dict[str, WrittenFile]) -> NodeStamps | None:
    files = ctx.files
    touched: set[Path] = set()
    moved: dict[str, os.stat_result] = {}
    changes = plan.add + plan.replace if tree is not None and new is not None else []
    if tree is not None and new is not None:
        touched.update(d for rel in plan.dirs_add
                       if (d := files.make_dir(rel, new.files[rel].mode, sync=False)) is not None)
        files.note_added({rel: new.files[rel] for rel in plan.add})
        half, resolved = len(changes) // 2, dict[str, str]()
        touched.update(files.put(rel, tree / rel, resolved, moved) for rel in changes[:half])
        crash_point("mid-apply")
        touched.update(files.put(rel, tree / rel, resolved, moved) for rel in changes[half:])
    else:
        crash_point("mid-apply")
    touched.update(d for rel in plan.remove if (d := files.remove(rel, sync=False)) is not None)
    files.sync_dirs(touched)  # every rename and unlink above is durable before the journal moves on
    for rel in plan.dirs_remove:
        files.remove_dir_if_empty(rel)
    if new is None:
        return None
    return _check_and_stamp(ctx, [rel for rel in changes if new.files[rel].kind == "file"], plan.remove,
                            new, written, moved)


def _check_and_stamp(ctx: Context, applied: list[str], removed: list[str], new: Manifest,
                     written: dict[str, WrittenFile], moved: dict[str, os.stat_result]) -> NodeStamps:
    """Each applied regular file's record: a digest other than planned is StagedFileChanged (the
    step rolls back); the records are saved as stamps (``stamps.py``). A file still the inode its
    writer sealed, untouched since (``NodeStamps.handed``), takes the digest its writer took, with
    no wait: a stamp whose ctime has not settled yet is taken at the commit (``NodeStamps.confirm``).
    Any other is hashed (on every core) once its ctime settled. Returns the stamps, with those
    still to confirm."""
    stamps = NodeStamps(ctx.state_dir / "cache" / STAMPS_FILE)
    stamps.forget([*applied, *removed])
    paths = ctx.files.node_path_texts(applied)
    handed = [rel for rel in applied if rel in written and rel in moved]
    hashed = [rel for rel in applied if rel not in written or rel not in moved]
    stamps.settle(paths[rel] for rel in hashed)  # a stamp of what is hashed needs a settled ctime
    found: dict[str, FileRecord | None] = {
        rel: stamps.handed(rel, paths[rel], written[rel], moved[rel]) for rel in handed}
    found.update(_on_every_core(lambda rel: stamps.fresh(rel, paths[rel]), hashed))
    for rel in applied:
        check_applied(rel, found[rel], new.files[rel])
    stamps.save(keep_old=True)
    return stamps


async def _restart(ctx: Context, tx: Transaction) -> None:
    """Configs in, removed services out, then forget/monitor/start the rest (zinit's order)."""
    plan, sup = tx.planned, ctx.supervisor
    if not ctx.configs_are_files:
        await svc.install_configs(sup, _new_services(tx), plan.services_config)
    await svc.remove_services(sup, plan.services_remove, **ctx.pace(),
                              remove_configs=not ctx.configs_are_files)
    await svc.restart_services(sup, plan.services_restart + plan.services_start, **ctx.pace())


async def _probation(ctx: Context, tx: Transaction) -> None:
    """Every restarted service must come up and stay up (same pid) for the probation time."""
    plan, settings = tx.planned, ctx.settings
    await svc.probation(ctx.supervisor, plan.services_restart + plan.services_start, _new_services(tx),
                        duration=settings.probation, start_timeout=settings.start_timeout,
                        sleep=settings.sleep, clock=settings.clock)


async def _commit(ctx: Context, tx: Transaction) -> None:
    await _kept(tx)  # the commit drops the backup they are read from
    if tx.stamps is not None:  # the applied files' ctimes have settled by now: the last stamps
        stamps, tx.stamps = tx.stamps, None
        await asyncio.to_thread(_confirm_stamps, stamps)
    await roll_forward(ctx)


def _confirm_stamps(stamps: NodeStamps) -> None:
    stamps.confirm()
    stamps.save(keep_old=True)


# ------------------------------------------------------------------ SPEC 11, top to bottom

_RB = OnFailure.ROLL_BACK
STEPS: tuple[Step, ...] = (
    Step("preflight", _preflight, OnFailure.REFUSE),
    Step("fetch", _fetch, OnFailure.REFUSE, crash_after="after-fetch", when=_needs_fetch),
    Step("plan", _plan, OnFailure.REFUSE, phase_after=Phase.PLANNED, crash_after="after-plan"),
    Step("self", _self_update, _RB, when=_updates_self),
    Step("program-start", _program_start, _RB, phase_after=Phase.SELF_UPDATED,
         crash_after="after-self-update", when=_updates_self, exits=True),
    Step("save-data", _save_data, _RB, when=_saves_data),
    Step("pre-copy", _hook("pre-copy"), _RB, phase_after=Phase.PRE_COPIED, crash_after="after-pre-copy"),
    Step("lock", _take_slot, _RB, when=_gated),  # nothing disrupted yet: a refusal rolls back the hooks
    Step("stop", _stop, _RB, phase_after=Phase.STOPPED, crash_after="after-stop"),
    Step("rollback", _rollback_hook, _RB, when=_rolls_back),  # services stopped, old files still there
    Step("backup", _backup, _RB, phase_after=Phase.BACKED_UP, crash_after="after-backup"),
    Step("apply", _apply, _RB, phase_before=Phase.APPLYING),
    Step("post-copy", _hook("post-copy"), _RB, phase_after=Phase.APPLIED, crash_after="after-apply"),
    Step("migrate", _hook("migrate"), _RB, phase_after=Phase.MIGRATED, crash_after="after-migrate"),
    Step("restart", _restart, _RB, phase_after=Phase.RESTARTED, crash_after="after-restart"),
    Step("probation", _probation, _RB),
    Step("post-start", _hook("post-start"), _RB, phase_after=Phase.PROBATION_PASSED,
         crash_after="after-probation"),
    # THE COMMIT POINT is the durable record before this step (it carries the new manifest)
    Step("commit", _commit, OnFailure.ROLL_FORWARD, phase_before=Phase.COMMITTED),
)


# ------------------------------------------------------------------ the loop


async def run_steps(ctx: Context, tx: Transaction, start: str = "fetch") -> None:
    """Run the table from ``start``; raises ReleaseRefused / RolledBack / RollbackIncomplete /
    RestartNeeded as the failing step's row says."""
    names = [step.name for step in STEPS]
    for step in STEPS[names.index(start):]:
        if not step.when(ctx, tx):
            continue
        try:
            if step.phase_before is not None:
                _record(ctx, tx, step.phase_before)
            with _timed(tx.report, step.name, ctx.settings.clock):
                await step.run(ctx, tx)
            if step.phase_after is not None:
                _record(ctx, tx, step.phase_after)
        except (ZosUpgradeError, OSError) as exc:
            if step.on_failure is OnFailure.REFUSE:
                raise refused(ctx, tx.report, step.name, exc) from exc
            await _failed(ctx, tx, step, exc)
        except (Exception, asyncio.CancelledError) as exc:
            await _failed(ctx, tx, step, exc)
        if step.crash_after is not None:
            crash_point(step.crash_after)
        if step.exits:
            log.warning("upgrader program replaced; restart needed",
                        extra={"program": "/" + ctx.settings.program})
            raise RestartNeeded(
                f"/{ctx.settings.program} was replaced by the release's copy; exit and let the supervisor "
                "restart it (the journal continues the transaction)"
            )


async def _failed(ctx: Context, tx: Transaction, step: Step, exc: BaseException) -> None:
    """What the row says a failure means; always raises."""
    if step.on_failure is not OnFailure.ROLL_BACK:
        raise exc  # refused steps refuse only typed errors; past the commit point recover() finishes
    reason = f"{type(exc).__name__}: {exc}"
    log.error("transaction failed, rolling back", extra={"step": step.name, "reason": reason})
    # a cancelled task (SIGTERM) still rolls back before it ends
    try:
        await asyncio.shield(_undo(ctx, tx, step.name, reason))
    except RollbackIncomplete as failed:
        failed.report = tx.report
        raise
    if isinstance(exc, asyncio.CancelledError):
        raise exc
    raise RolledBack(reason, step=step.name, report=tx.report) from exc


async def _undo(ctx: Context, tx: Transaction, step: str, reason: str) -> None:
    await _kept(tx)  # the rollback moves the backup they are read from back onto the node
    await roll_back(ctx, step, reason)


def _record(ctx: Context, tx: Transaction, phase: Phase) -> None:
    """The journal's durable record of ``phase``; ``planned`` begins the journal."""
    if phase is not Phase.PLANNED:
        ctx.journal.advance(phase)
        return
    release, now = tx.release, time.time()
    ctx.journal.begin(JournalRecord(
        id=uuid.uuid4().hex, kind=tx.report.kind, phase=Phase.PLANNED,
        source=release.source if release else tx.key, target_key=tx.key,
        from_version=tx.report.from_version, to_version=tx.report.to_version,
        mount_md5=release.md5 if release else "", plan=tx.planned,
        new_manifest=msgspec.json.encode(tx.new_manifest).decode() if tx.new_manifest else "",
        started=now, updated=now, flist_file=_state_path(ctx, release.flist) if release else "",
        block_store=release.block_store if release else None, holds=tx.holds,
    ))


def _state_path(ctx: Context, path: Path) -> str:
    """``path`` as the journal records it: relative to the state directory when inside it, so a
    state directory moved or copied whole (a restored backup) still recovers."""
    try:
        return str(path.relative_to(ctx.state_dir))
    except ValueError:
        return str(path)


def _new_services(tx: Transaction) -> dict[str, str]:
    return tx.new_manifest.services if tx.new_manifest else {}


def _count_download(report: UpgradeReport, mount: Mount) -> None:
    report.bytes_downloaded += mount.report.bytes_downloaded
    report.blocks_fetched += mount.report.blocks_fetched
    report.blocks_from_cache += mount.report.blocks_from_cache


@contextlib.contextmanager
def _timed(report: UpgradeReport, name: str, clock: Callable[[], float]) -> Iterator[None]:
    started = clock()
    try:
        yield
    finally:
        report.phases[name] = report.phases.get(name, 0.0) + clock() - started
