"""The plan: what a transaction changes on the node, computed before anything changes.

Pure policy over two descriptions (what is installed, what the release holds) and a view of the node
as it is; no I/O here except the ``node`` callback the caller passes in. The plan is stored in the
journal, so rollback never needs the release again.

Service policy (documented in the README of the upgrade layer, SPEC 11 step 5):

* a service whose config is new is **started** (installed, monitored, started) after apply;
* a service whose config disappeared is **removed**: stopped before apply, forgotten and its config
  removed after;
* a service whose config text changed is **restarted**: stopped before apply, restarted after;
* when any file of the release changed, every other service of the release is **restarted** too (a
  changed library or data file may be used by any of them; this is what the Go original did);
* **protected** services (the upgrader itself) are never stopped or restarted; their configs are still
  installed. The upgrader's own program is updated by self-update (SPEC 11.3).

**Reserved** paths (the upgrader's state directory, the supervisor's socket and rendered configs, the
trusted keys) are never the release's: a release with an entry at, under, or (not a folder) above one
is refused, and one installed before this rule is never allowed to remove them on its way out (it
once deleted ``daemon.lock`` and let a second daemon run beside the first).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

import msgspec

from zos_upgrade.upgrade.errors import PlanRefused

if TYPE_CHECKING:
    from zos_upgrade.upgrade.manifest import FileRecord

__all__ = ["Plan", "make_plan", "reserved_clash"]


class Plan(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    # omit_defaults: a plan without data paths encodes exactly as before they existed, so a journal
    # it is part of stays readable by an older upgrader (e.g. after a self-update is rolled back)
    add: list[str] = msgspec.field(default_factory=list)        # files/links not on the node yet
    replace: list[str] = msgspec.field(default_factory=list)    # files/links on the node that differ
    remove: list[str] = msgspec.field(default_factory=list)     # files/links of the old release only
    dirs_add: list[str] = msgspec.field(default_factory=list)   # parents first
    dirs_remove: list[str] = msgspec.field(default_factory=list)  # deepest first; removed when empty
    services_start: list[str] = msgspec.field(default_factory=list)
    services_restart: list[str] = msgspec.field(default_factory=list)
    services_remove: list[str] = msgspec.field(default_factory=list)
    services_config: list[str] = msgspec.field(default_factory=list)  # configs to install (new/changed)
    program_update: bool = False
    data_paths: list[str] = msgspec.field(default_factory=list)  # node paths hooks may change (datapaths)

    @property
    def files_changed(self) -> bool:
        return bool(self.add or self.replace or self.remove)

    @property
    def to_stop(self) -> list[str]:
        """Stopped before apply: running services whose files or config will change or vanish."""
        return self.services_restart + self.services_remove

    @property
    def touched_paths(self) -> list[str]:
        return self.add + self.replace + self.remove


def reserved_clash(rel: str, kind: str, reserved: Mapping[str, str]) -> str | None:
    """Why an entry of ``kind`` at ``rel`` would write a reserved path, or None when it does not.

    An entry at or below a reserved path writes it; so does anything but a folder above one (a file
    or link there would replace the folder that holds it, or redirect it elsewhere).
    """
    for path, what in reserved.items():
        if rel == path or rel.startswith(path + "/"):
            return f"lies in {what} (/{path})"
        if kind != "dir" and path.startswith(rel + "/"):
            return f"is a {kind} where the folder of {what} (/{path}) is"
    return None


def make_plan(
    *,
    old_files: Mapping[str, FileRecord],
    old_services: Mapping[str, str],
    new_files: Mapping[str, FileRecord],
    new_services: Mapping[str, str],
    node: Callable[[str], FileRecord | None],
    protected: Collection[str],
    program: str | None,
    require_services: bool,
    source: str,
    owned_elsewhere: Mapping[str, str] | None = None,
    reserved: Mapping[str, str] | None = None,
) -> Plan:
    """Compare the release with the installed manifest and the node; refuse what cannot be applied.

    ``node(rel)`` reports what is at a path on the node now (so a file changed behind our back, or
    present before a first install, is backed up and replaced, not silently overwritten).
    ``program`` is the upgrader's own path relative to the root when self-update is on.
    ``owned_elsewhere`` maps paths of the OTHER installed manifests (boot release, other bins
    packages) to their owner: a file of another release is never taken over (its uninstall would
    delete it from under the owner), and a directory another release also has is never removed.
    ``reserved`` maps the paths no release may write (relative to the root) to what they are.
    """
    others = owned_elsewhere or {}
    guard = reserved or {}
    for rel in sorted(new_files):
        clash = reserved_clash(rel, new_files[rel].kind, guard)
        if clash is not None:
            raise PlanRefused(
                f"release {source}: /{rel} {clash}; a release may never write the upgrader's own state "
                "or the supervisor's files"
            )
    if require_services and not new_services:
        raise PlanRefused(
            f"release {source} ships no service config (expected at least one etc/zinit/<name>.yaml); "
            "a boot release without services would leave the node with nothing running"
        )
    plan = Plan()
    for rel in sorted(new_files):
        new = new_files[rel]
        current = node(rel)
        if new.kind == "dir":
            if current is None:
                plan.dirs_add.append(rel)
            elif current.kind != "dir":
                raise PlanRefused(
                    f"release {source}: /{rel} is a directory in the release but a {current.kind} "
                    "on the node; "
                    "changing a path's type is not supported"
                )
            continue
        if rel in others:
            raise PlanRefused(
                f"release {source}: /{rel} belongs to {others[rel]}; a release may not take over "
                "another one's files"
            )
        if current is None:
            plan.add.append(rel)
        elif current.kind == "dir":
            raise PlanRefused(
                f"release {source}: /{rel} is a {new.kind} in the release but a directory on the node; "
                "changing a path's type is not supported"
            )
        elif current != new:
            plan.replace.append(rel)
    for rel in sorted(old_files, reverse=True):
        old = old_files[rel]
        if rel in new_files or reserved_clash(rel, old.kind, guard) is not None:
            continue  # a reserved path in an old manifest was never the release's to remove
        current = node(rel)
        if current is None:
            continue
        if old.kind == "dir":
            if current.kind == "dir" and rel not in others:
                plan.dirs_remove.append(rel)
        elif current.kind != "dir":
            plan.remove.append(rel)
    plan.remove.sort()
    if program is not None and program in plan.add + plan.replace:
        plan.program_update = True

    guarded = set(protected)
    plan.services_start = sorted(n for n in new_services if n not in old_services and n not in guarded)
    plan.services_remove = sorted(n for n in old_services if n not in new_services and n not in guarded)
    changed = {n for n in new_services if n in old_services and new_services[n] != old_services[n]}
    plan.services_config = sorted(n for n in new_services if n not in old_services or n in changed)
    restart = changed
    if plan.files_changed:
        restart = {n for n in new_services if n in old_services}
    plan.services_restart = sorted(n for n in restart if n not in guarded)
    return plan
