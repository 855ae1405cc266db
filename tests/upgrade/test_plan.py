"""The plan: files to add/replace/remove, and which services stop, restart, start or go."""

from __future__ import annotations

import pytest

from zos_upgrade.upgrade.errors import PlanRefused
from zos_upgrade.upgrade.manifest import FileRecord
from zos_upgrade.upgrade.plan import Plan, make_plan


def f(digest: str, mode: int = 0o644) -> FileRecord:
    return FileRecord("file", mode, len(digest), digest)


D = FileRecord("dir", 0o755, 0, "")
SVC = {"alpha": "exec: a\n", "beta": "exec: b\n", "upgrade": "exec: u\n"}


def plan_for(
    old: dict[str, FileRecord], new: dict[str, FileRecord], node: dict[str, FileRecord] | None = None,
    old_services: dict[str, str] | None = None, new_services: dict[str, str] | None = None,
    program: str | None = "bin/zos-upgrade", require: bool = True,
) -> Plan:
    on_node = dict(old if node is None else node)
    return make_plan(
        old_files=old, old_services=SVC if old_services is None else old_services, new_files=new,
        new_services=SVC if new_services is None else new_services, node=on_node.get,
        protected=("upgrade",), program=program, require_services=require, source="test",
    )


def test_files_added_replaced_removed_and_directories() -> None:
    old = {"opt": D, "opt/a": f("1"), "opt/b": f("2"), "old": D, "old/x": f("3")}
    new = {"opt": D, "opt/a": f("1"), "opt/b": f("9"), "opt/c": f("4"), "new": D, "new/y": f("5")}
    plan = plan_for(old, new)
    assert plan.add == ["new/y", "opt/c"]
    assert plan.replace == ["opt/b"]
    assert plan.remove == ["old/x"]
    assert plan.dirs_add == ["new"] and plan.dirs_remove == ["old"]


def test_the_node_decides_what_is_replaced_not_the_manifest() -> None:
    old = {"etc/a": f("1"), "etc/b": f("2")}
    new = {"etc/a": f("1"), "etc/b": f("2"), "etc/c": f("3")}
    node = {"etc/a": f("tampered"), "etc/b": f("2", mode=0o600), "etc/c": f("preexisting")}
    plan = plan_for(old, new, node)
    assert plan.replace == ["etc/a", "etc/b", "etc/c"]  # edited, re-moded, and present before install
    assert plan.add == []


def test_file_missing_on_node_is_added_and_removed_file_already_gone_is_skipped() -> None:
    old = {"a": f("1"), "gone": f("2")}
    new = {"a": f("1")}
    plan = plan_for(old, new, node={})
    assert plan.add == ["a"] and plan.remove == []


def test_unchanged_release_restarts_nothing() -> None:
    files = {"opt/a": f("1")}
    plan = plan_for(files, files)
    assert not plan.files_changed
    assert plan.services_restart == plan.services_start == plan.services_remove == []


def test_any_file_change_restarts_every_unprotected_service_of_the_release() -> None:
    plan = plan_for({"opt/a": f("1")}, {"opt/a": f("2")})
    assert plan.services_restart == ["alpha", "beta"]
    assert "upgrade" not in plan.to_stop


def test_service_config_changes() -> None:
    new_services = {"alpha": "exec: a2\n", "gamma": "exec: g\n", "upgrade": "exec: u2\n"}
    plan = plan_for({"x": f("1")}, {"x": f("1")}, new_services=new_services)
    assert plan.services_restart == ["alpha"]          # changed config
    assert plan.services_start == ["gamma"]            # new config
    assert plan.services_remove == ["beta"]            # config gone
    assert plan.services_config == ["alpha", "gamma", "upgrade"]  # protected config still installed
    assert plan.to_stop == ["alpha", "beta"]


def test_program_change_is_flagged_for_self_update() -> None:
    old = {"bin/zos-upgrade": f("v1")}
    assert plan_for(old, {"bin/zos-upgrade": f("v2")}).program_update
    assert not plan_for(old, {"bin/zos-upgrade": f("v1")}).program_update
    assert not plan_for(old, {"bin/zos-upgrade": f("v2")}, program=None).program_update


@pytest.mark.parametrize(("new", "node"), [
    ({"etc": f("1")}, {"etc": D}),
    ({"etc": D}, {"etc": f("1")}),
    ({"etc": D}, {"etc": FileRecord("link", 0o777, 0, "/elsewhere")}),
])
def test_type_changes_are_refused(new: dict[str, FileRecord], node: dict[str, FileRecord]) -> None:
    with pytest.raises(PlanRefused, match="changing a path's type is not supported"):
        plan_for({}, new, node)


def test_a_boot_release_without_services_is_refused() -> None:
    with pytest.raises(PlanRefused, match="ships no service config"):
        plan_for({}, {"opt/a": f("1")}, new_services={})
    assert plan_for({}, {"opt/a": f("1")}, new_services={}, require=False).add == ["opt/a"]


def test_files_of_another_release_are_never_taken_over_and_shared_dirs_stay() -> None:
    others = {"usr": "the boot release", "usr/bin": "the boot release", "usr/bin/zos": "the boot release"}
    with pytest.raises(PlanRefused, match="/usr/bin/zos belongs to the boot release"):
        make_plan(old_files={}, old_services={}, new_files={"usr": D, "usr/bin": D, "usr/bin/zos": f("1")},
                  new_services={}, node={}.get, protected=(), program=None, require_services=False,
                  source="pkg", owned_elsewhere=others)
    old = {"usr": D, "usr/bin": D, "usr/bin/tool": f("1"), "opt": D}
    plan = make_plan(old_files=old, old_services={}, new_files={}, new_services={}, node=dict(old).get,
                     protected=(), program=None, require_services=False, source="pkg", owned_elsewhere=others)
    assert plan.remove == ["usr/bin/tool"]
    assert plan.dirs_remove == ["opt"]  # usr and usr/bin are the boot release's too


# ------------------------------------------------------------ reserved paths are never the release's

RESERVED = {
    "var/cache/modules/upgrade": "the upgrader's state directory",
    "sup/supervisor.sock": "the supervisor's socket",
    "sup/conf.d": "the folder of supervisord's rendered program configs",
    "etc/zu/release.pub": "a trusted release key",
}
L = FileRecord("link", 0o777, 0, "elsewhere")


@pytest.mark.parametrize(
    ("rel", "record", "why"),
    [
        ("var/cache/modules/upgrade/daemon.lock", f("1"), "lies in the upgrader's state directory"),
        ("var/cache/modules/upgrade/status.json", f("1"), "lies in the upgrader's state directory"),
        ("var/cache/modules/upgrade/manifests/boot.json", f("1"), "lies in the upgrader's state directory"),
        ("var/cache/modules/upgrade/mounts", D, "lies in the upgrader's state directory"),
        ("var/cache/modules/upgrade", D, "lies in the upgrader's state directory"),
        ("var/cache", L, "is a link where the folder of the upgrader's state directory"),
        ("var/cache/modules", f("1"), "is a file where the folder of the upgrader's state directory"),
        ("sup/supervisor.sock", f("1"), "lies in the supervisor's socket"),
        ("sup", L, "is a link where the folder of the supervisor's socket"),
        ("sup/conf.d/evil.conf", f("1"), "lies in the folder of supervisord's rendered program configs"),
        ("etc/zu/release.pub", f("1"), "lies in a trusted release key"),
    ],
)
def test_a_release_writing_a_reserved_path_is_refused(rel: str, record: FileRecord, why: str) -> None:
    new = {"opt": D, "opt/a": f("1"), rel: record}
    with pytest.raises(PlanRefused, match=rf"release test: /{rel} {why}.*may never write"):
        make_plan(old_files={}, old_services={}, new_files=new, new_services=SVC, node={}.get,
                  protected=("upgrade",), program=None, require_services=True, source="test",
                  reserved=RESERVED)


def test_folders_above_a_reserved_path_and_neighbours_are_fine() -> None:
    new = {"var": D, "var/cache": D, "var/cache/modules": D, "var/cache/modules/upgrade2": f("1"),
           "sup": D, "sup/other.sock": f("2"), "etc": D, "etc/zu": D, "etc/zu/release.pub.txt": f("3")}
    plan = make_plan(old_files={}, old_services={}, new_files=new, new_services=SVC, node={}.get,
                     protected=("upgrade",), program=None, require_services=True, source="test",
                     reserved=RESERVED)
    assert plan.add == ["etc/zu/release.pub.txt", "sup/other.sock", "var/cache/modules/upgrade2"]


def test_a_release_installed_before_the_rule_never_removes_reserved_paths_on_its_way_out() -> None:
    lock = "var/cache/modules/upgrade/daemon.lock"
    old = {"opt/a": f("1"), lock: f("2"), "var/cache/modules/upgrade": D}
    plan = make_plan(old_files=old, old_services=SVC, new_files={"opt/b": f("3")}, new_services=SVC,
                     node=old.get, protected=("upgrade",), program=None, require_services=True,
                     source="test", reserved=RESERVED)
    assert plan.remove == ["opt/a"] and plan.dirs_remove == []
