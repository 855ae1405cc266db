"""Rollback: the boot release back to the previous one, through the same transaction as an upgrade.

**What it goes back to.** Every commit keeps the manifest it replaced under
``<state>/manifests/previous/`` (``ManifestStore.keep_previous``) until the next commit replaces it.
The previous release's flist file stays in the downloads directory (``<state>/flists/<md5>``, checked
against that md5 again here); the files it changes back are staged from the blocks the node still
holds (the installed files, read and verified) and the block cache (every block fetched once is kept
there; nothing evicts them), so going back needs no download.

**The transaction** is the STEPS table (``steps.py``) with kind ``rollback``: journal, crash points,
probation of the services restarted, and a failure or crash before the commit point rolls the
rollback itself back (the node stays on the release it was on).

**Hooks, in reverse.** The forward hooks of the release gone back to (``pre-copy``, ``post-copy``,
``migrate``, ``post-start``) do NOT run: they move data from the release before it, which is not where
the node is. Instead the release rolled back FROM may ship a ``rollback`` executable at its root:
the reverse of its own ``migrate`` (only the newer release knows both data formats). It runs from
that release's tree (mounted again from its kept flist file) after its services stopped and before
its files are replaced, with ``ZOS_TRANSACTION=rollback`` and the two versions in its environment.
The node data it may change is what THAT release's ``hooks.paths`` lists: saved before it runs,
restored if the rollback fails.

**Held afterwards.** The journal carries :class:`~zos_upgrade.upgrade.journal.Holds`: at the commit
the release rolled back from is remembered like a failed release (the daemon does not move forward
to it again until ``zos-upgrade clear-failed``), and the release gone back to is forgotten.

**Twice in a row** goes back again: after a rollback the previous release is the one rolled back
from, and an operator who rolls back again chose it (its hold is cleared by that commit).
"""

from __future__ import annotations

from zos_upgrade.sources.base import VerifiedRelease
from zos_upgrade.upgrade.context import Context
from zos_upgrade.upgrade.errors import RollbackRefused, UpgradeError
from zos_upgrade.upgrade.flister import Mount, Partial, check_kept_flist
from zos_upgrade.upgrade.manifest import Manifest

__all__ = ["ROLLBACK_HOOK", "kept_release", "mount_rolled_from", "rollback_target"]

ROLLBACK_HOOK = "rollback"


def rollback_target(ctx: Context) -> tuple[Manifest, Manifest]:
    """(installed, previous) boot manifests, or RollbackRefused naming what is missing."""
    current = ctx.installed_boot()
    if current is None:
        raise RollbackRefused(f"no boot release is installed ({ctx.manifests.path_for('boot')} does not "
                              "exist): there is nothing to roll back")
    previous = ctx.manifests.load_previous("boot")
    if previous is None:
        raise RollbackRefused(
            f"no previous release to roll back to: {ctx.manifests.path_for('boot', previous=True)} does not "
            f"exist: {current.version} is the first release committed here (or was installed by an upgrader "
            "that kept no previous release)")
    if previous.md5 == current.md5:
        raise RollbackRefused(f"the previous release {previous.version} (md5 {previous.md5}) is the "
                              "installed one: there is nothing to roll back")
    return current, previous


def kept_release(ctx: Context, manifest: Manifest, block_store: str | None) -> VerifiedRelease:
    """An installed (or previously installed) release, from its kept flist file, md5 checked again."""
    flist = ctx.flister.downloads_dir / manifest.md5
    try:
        check_kept_flist(flist, manifest.md5, f"release {manifest.version}", "its install")
    except (UpgradeError, OSError) as exc:
        raise RollbackRefused(f"{exc}; the node is unchanged") from exc
    return VerifiedRelease(
        target=manifest.kind, fqdn=manifest.fqdn, version=manifest.version, source=manifest.source,
        flist=flist, md5=manifest.md5, verified_by="md5 of the flist file kept since its install",
        info=manifest.info, block_store=block_store,
    )


async def mount_rolled_from(ctx: Context) -> Mount:
    """The tree of the release being rolled back from (still the installed manifest: not committed)."""
    record = ctx.journal.record
    current = ctx.manifests.load(record.target_key)
    if current is None:
        raise UpgradeError(f"rollback {record.id}: the installed manifest of {record.target_key} is gone")
    from zos_upgrade.upgrade.staging import control_only  # the staging stack: only when a rollback mounts

    # only its control files: its hooks and hooks.paths are what the rollback reads of it
    return await ctx.flister.mount(kept_release(ctx, current, record.block_store),
                                   check=lambda _reader: Partial(control_only))
