"""hooks.paths: validation of the declared node paths, and their save / restore / drop on real files."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from zos_upgrade.upgrade.datapaths import (
    DATA_PATHS_FILE,
    DataPaths,
    SavedPath,
    parse_data_paths,
    read_data_paths,
    state_relative,
)
from zos_upgrade.upgrade.errors import JournalError, PlanRefused, UnsafePath
from zos_upgrade.upgrade.journal import Journal, JournalRecord, Phase
from zos_upgrade.upgrade.manifest import scan_release
from zos_upgrade.upgrade.nodefs import NodeFS
from zos_upgrade.upgrade.plan import Plan

WHERE = "release file /hooks.paths"


def parse(text: str, **options: object) -> list[str]:
    return parse_data_paths(text, where=WHERE, **options)  # type: ignore[arg-type]


def test_valid_entries_become_relative_paths_and_comments_are_ignored() -> None:
    text = "# data migrate converts\n/var/lib/app/db\n\n  /etc/app/local.conf  \n"
    assert parse(text) == ["var/lib/app/db", "etc/app/local.conf"]
    assert parse("") == []


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("var/lib/app", "not absolute"),
        ("/var/../etc/shadow", "'..'"),
        ("/..", "'..'"),
        ("/var/./lib", "not normalised"),
        ("/var//lib", "not normalised"),
        ("/var/lib/", "not normalised"),
        ("//var/lib", "not normalised"),
        ("/", "whole node"),
        ("/var/\0lib", "control characters"),
        ("/var/\x1blib", "control characters"),
        ("/" + "a" * 5000, "longer than"),
    ],
)
def test_hostile_or_malformed_entries_are_refused_naming_the_line(line: str, words: str) -> None:
    with pytest.raises(PlanRefused) as refused:
        parse(f"/ok/first\n{line}\n")
    assert words in str(refused.value)
    assert "line 2" in str(refused.value)


@pytest.mark.parametrize("line", ["/var/cache/modules/upgrade/journal.json", "/var/cache/modules/upgrade",
                                  "/var/cache", "/var"])
def test_entries_inside_or_holding_the_state_dir_are_refused(line: str) -> None:
    with pytest.raises(PlanRefused, match="state directory"):
        parse(line, state_rel="var/cache/modules/upgrade")


def test_entries_holding_release_files_are_refused_but_data_inside_release_dirs_is_fine() -> None:
    owned = {"opt", "opt/app", "opt/app/bin", "etc", "etc/zinit", "etc/zinit/a.yaml"}
    assert parse("/opt/app/data\n/etc/app.conf\n", owned=owned) == ["opt/app/data", "etc/app.conf"]
    for line in ("/opt/app/bin", "/etc/zinit", "/etc"):
        with pytest.raises(PlanRefused, match="a file of the release"):
            parse(line, owned=owned)


def test_duplicates_nesting_and_too_many_entries_are_refused() -> None:
    with pytest.raises(PlanRefused, match="overlaps /srv/data"):
        parse("/srv/data\n/srv/data\n")
    with pytest.raises(PlanRefused, match="overlaps /srv"):
        parse("/srv\n/srv/data\n")
    with pytest.raises(PlanRefused, match="overlaps"):
        parse("/srv/data/x\n/srv/data\n")
    assert len(parse("".join(f"/d/{i}\n" for i in range(4)), max_paths=4)) == 4
    with pytest.raises(PlanRefused, match="more than 4 paths"):
        parse("".join(f"/d/{i}\n" for i in range(5)), max_paths=4)


def test_the_file_itself_must_be_small_utf8_and_regular(tmp_path: Path) -> None:
    assert read_data_paths(tmp_path) == []
    target = tmp_path / DATA_PATHS_FILE
    target.write_bytes(b"/srv/\xff\n")
    with pytest.raises(PlanRefused, match="not UTF-8"):
        read_data_paths(tmp_path)
    target.write_text("/srv/x\n" * 20000)
    with pytest.raises(PlanRefused, match="bytes; expected at most"):
        read_data_paths(tmp_path)
    target.unlink()
    (tmp_path / "elsewhere").write_text("/srv/x\n")
    target.symlink_to("elsewhere")
    with pytest.raises(PlanRefused, match="regular file"):
        read_data_paths(tmp_path)
    target.unlink()
    target.write_text("/srv/x\n")
    assert read_data_paths(tmp_path) == ["srv/x"]


def test_hooks_paths_is_a_control_file_never_copied_onto_the_node(tmp_path: Path) -> None:
    (tmp_path / "etc/zinit").mkdir(parents=True)
    (tmp_path / "etc/zinit/a.yaml").write_text("exec: /bin/true\n")
    (tmp_path / DATA_PATHS_FILE).write_text("/srv/x\n")
    files, _ = scan_release(tmp_path)
    assert DATA_PATHS_FILE not in files and "etc/zinit/a.yaml" in files


def test_state_relative_says_where_the_state_dir_is(tmp_path: Path) -> None:
    assert state_relative(tmp_path, tmp_path / "var/cache/up") == "var/cache/up"
    assert state_relative(tmp_path / "node", tmp_path / "state") is None


# ---------------------------------------------------------------------------------- save/restore


def data_paths(tmp_path: Path) -> tuple[Path, DataPaths]:
    root = tmp_path / "node"
    root.mkdir()
    state = tmp_path / "state"
    return root, DataPaths(NodeFS(root, state / "backup" / "current"), state / "backup" / "data", state)


def snapshot(path: Path) -> dict[str, tuple[str, int, bytes]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            kind = "link" if full.is_symlink() else "dir" if full.is_dir() else "file"
            body = b""
            if kind == "link":
                body = os.readlink(full).encode()
            elif kind == "file":
                body = full.read_bytes()
            out[str(full.relative_to(path))] = (kind, st.st_mode & 0o7777, body)
    return out


def test_a_file_converted_in_place_is_restored_from_a_copy_not_a_link(tmp_path: Path) -> None:
    root, data = data_paths(tmp_path)
    db = root / "srv/db"
    db.parent.mkdir()
    db.write_bytes(b"format=1")
    db.chmod(0o640)
    [saved] = data.save_all(["srv/db"])
    assert saved == SavedPath("srv/db", True, [])
    with open(db, "r+b") as handle:  # in place: a hard link would change too
        handle.write(b"FORMAT=2")
    data.restore(saved)
    assert db.read_bytes() == b"format=1" and db.stat().st_mode & 0o777 == 0o640
    data.restore(saved)  # again (a crash during the first): nothing changes
    assert db.read_bytes() == b"format=1"
    data.drop()
    assert not data.save_root.exists()
    assert [p.name for p in db.parent.iterdir()] == ["db"]


def test_a_directory_tree_is_restored_exactly(tmp_path: Path) -> None:
    root, data = data_paths(tmp_path)
    tree = root / "var/lib/app"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub/b.bin").write_bytes(b"\0" * 100)
    (tree / "link").symlink_to("a.txt")
    (tree / "sub").chmod(0o750)
    before = snapshot(tree)
    [saved] = data.save_all(["var/lib/app"])
    (tree / "a.txt").write_text("migrated")
    (tree / "sub/b.bin").unlink()
    (tree / "new.txt").write_text("new")
    data.restore(saved)
    assert snapshot(tree) == before
    assert not list(tree.parent.glob("*.zu-*"))


def test_a_path_that_did_not_exist_is_removed_with_the_directories_hooks_made(tmp_path: Path) -> None:
    root, data = data_paths(tmp_path)
    (root / "var").mkdir()
    [saved] = data.save_all(["var/lib/app/db"])
    assert saved == SavedPath("var/lib/app/db", False, ["var/lib/app", "var/lib"])
    (root / "var/lib/app").mkdir(parents=True)
    (root / "var/lib/app/db").write_text("created by migrate")
    data.restore(saved)
    assert sorted(p.name for p in root.rglob("*")) == ["var"]
    data.restore(saved)


def test_restore_finishes_after_a_crash_at_each_of_its_steps(tmp_path: Path) -> None:
    root, data = data_paths(tmp_path)
    db = root / "db"
    db.write_text("old")
    [saved] = data.save_all(["db"])
    incoming, outgoing = root / "db.zu-new", root / "db.zu-new-old"
    db.write_text("new")
    # crashed after the copy was renamed next to the node path
    os.rename(data.saved_path("db"), incoming)
    data.restore(saved)
    assert db.read_text() == "old" and sorted(p.name for p in root.iterdir()) == ["db"]
    # crashed after the node path was moved aside, before the copy took its place
    saved2 = data.save("db")
    db.write_text("new")
    os.rename(data.saved_path("db"), incoming)
    os.rename(db, outgoing)
    data.restore(saved2)
    assert db.read_text() == "old" and sorted(p.name for p in root.iterdir()) == ["db"]


def test_special_files_and_escaping_parents_are_refused(tmp_path: Path) -> None:
    root, data = data_paths(tmp_path)
    (root / "srv").mkdir()
    os.mkfifo(root / "srv/pipe")
    with pytest.raises(UnsafePath, match="only directories, files and symlinks"):
        data.save("srv")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    with pytest.raises(UnsafePath, match="outside the node root"):
        data.check("escape/secret")
    state = tmp_path / "node/var/state"
    state.mkdir(parents=True)
    inner = DataPaths(data.files, state / "backup" / "data", state)
    (root / "to-state").symlink_to(state)
    with pytest.raises(UnsafePath, match="state directory"):
        inner.check("to-state/journal.json")


# ---------------------------------------------------------------------------------- journal


def journal_record(**changes: object) -> JournalRecord:
    base = JournalRecord(
        id="t1", kind="boot", phase=Phase.PLANNED, source="tf-zos/zos:1.1.0.fl", expected_hash=None,
        target_key="boot", from_version="1.0.0", to_version="1.1.0", mount_md5="0" * 32,
        plan=Plan(add=["opt/x"]), new_manifest="{}", started=1.0, updated=1.0,
    )
    return msgspec.structs.replace(base, **changes)


def test_journal_records_saved_data_once_before_the_first_hook(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.begin(journal_record(plan=Plan(add=["opt/x"], data_paths=["srv/db"])))
    saved = [SavedPath("srv/db", True, []), SavedPath("srv/new", False, ["srv"])]
    journal.record_data_saved(saved)
    reread = Journal(tmp_path).load()
    assert reread is not None and reread.data_saved == saved and reread.plan.data_paths == ["srv/db"]

    with pytest.raises(JournalError, match="already saved"):
        journal.record_data_saved(saved)
    journal.advance(Phase.PRE_COPIED)
    later = Journal(tmp_path)
    assert later.load() is not None
    with pytest.raises(JournalError, match="before the first hook"):
        later.record_data_saved([])


def test_a_journal_without_data_paths_is_the_old_format_both_ways(tmp_path: Path) -> None:
    """Written before data paths existed: it loads. Written now without them: no new keys appear,
    so an older upgrader (a rolled-back self-update) still reads it."""
    old_format = (
        b'{"id":"t0","kind":"boot","phase":"backed-up","source":"tf-zos/zos:1.1.0.fl","expected_hash":null,'
        b'"target_key":"boot","from_version":"1.0.0","to_version":"1.1.0","mount_md5":"' + b"0" * 32 +
        b'","plan":{"add":["opt/x"],"replace":[],"remove":[],"dirs_add":[],"dirs_remove":[],'
        b'"services_start":[],"services_restart":[],"services_remove":[],"services_config":[],'
        b'"program_update":false},"new_manifest":"","started":1.0,"updated":2.0,"failure":null}'
    )
    (tmp_path / "journal.json").write_bytes(old_format)
    loaded = Journal(tmp_path).load()
    assert loaded is not None and loaded.data_saved == [] and loaded.plan.data_paths == []
    encoded = msgspec.json.encode(journal_record())
    assert b"data_saved" not in encoded and b"data_paths" not in encoded
