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
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

import msgspec

from zos_upgrade.upgrade.errors import PlanRefused

if TYPE_CHECKING:
    from zos_upgrade.upgrade.manifest import FileRecord

__all__ = ["Plan", "make_plan"]


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
) -> Plan:
    """Compare the release with the installed manifest and the node; refuse what cannot be applied.

    ``node(rel)`` reports what is at a path on the node now (so a file changed behind our back, or
    present before a first install, is backed up and replaced, not silently overwritten).
    ``program`` is the upgrader's own path relative to the root when self-update is on.
    ``owned_elsewhere`` maps paths of the OTHER installed manifests (boot release, other bins
    packages) to their owner: a file of another release is never taken over (its uninstall would
    delete it from under the owner), and a directory another release also has is never removed.
    """
    others = owned_elsewhere or {}
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
        if rel in new_files:
            continue
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
