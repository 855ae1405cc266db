"""The pure rules a materialize holds the tree to, without a destination: paths, parents, links,
duplicates, which specials are made, the order directories are finished in."""

from __future__ import annotations

import os
import stat

import pytest

from zos_upgrade.flist.model import Entry, EntryKind, HostileFlist
from zos_upgrade.flist.tree_checks import TreeChecks, special_file_type, split_path


def _dir(path: str) -> Entry:
    return Entry(path, EntryKind.DIR, stat.S_IFDIR | 0o755)


def _file(path: str) -> Entry:
    return Entry(path, EntryKind.FILE, stat.S_IFREG | 0o644)


@pytest.mark.parametrize("path", ["relative", "/a//b", "/a/./b", "/a/../b", "/a/", "/nul\0byte"])
def test_a_path_that_could_leave_the_destination_is_refused(path: str) -> None:
    with pytest.raises(HostileFlist, match="entry path"):
        split_path(path)


def test_a_path_splits_into_its_components() -> None:
    assert split_path("/etc/ssh/sshd_config") == ["etc", "ssh", "sshd_config"]


def test_an_entry_needs_its_parent_listed_before_it_as_a_directory() -> None:
    checks = TreeChecks()
    with pytest.raises(HostileFlist, match="its parent '/etc' is not a directory listed before it"):
        checks.check(_file("/etc/motd"), ["etc", "motd"])
    checks.add_dir(_dir("/etc"))
    checks.check(_file("/etc/motd"), ["etc", "motd"])


def test_nothing_is_written_through_a_link_of_the_flist() -> None:
    checks = TreeChecks()
    checks.add_link("/a")
    with pytest.raises(HostileFlist, match="goes through symlink '/a'"):
        checks.check(_file("/a/passwd"), ["a", "passwd"])


def test_a_path_is_refused_twice_until_its_file_carries_its_final_name() -> None:
    checks = TreeChecks()
    checks.add_dir(_dir("/d"))
    checks.add_link("/l")
    checks.file_started("/f")
    for path in ("/d", "/l", "/f"):
        with pytest.raises(HostileFlist, match="appears twice"):
            checks.check(_file(path), split_path(path))
    checks.file_named("/f")  # from here on the destination itself refuses a second /f
    checks.check(_file("/f"), ["f"])


def test_directories_are_finished_deepest_first_in_walk_order_within_a_depth() -> None:
    checks = TreeChecks()
    for path in ("/a", "/a/b", "/c", "/a/b/d", "/c/e"):
        checks.add_dir(_dir(path))
    assert [d.path for d in checks.dirs_deepest_first()] == ["/a/b/d", "/a/b", "/c/e", "/a", "/c"]


@pytest.mark.parametrize(
    ("file_type", "allow_devices", "made"),
    [
        (stat.S_IFIFO, False, True),
        (stat.S_IFSOCK, True, False),
        (stat.S_IFCHR, False, False),
        (stat.S_IFCHR, True, True),
        (stat.S_IFBLK, True, True),
    ],
)
def test_sockets_are_never_made_and_devices_only_when_allowed(file_type: int, allow_devices: bool,
                                                              made: bool) -> None:
    entry = Entry("/dev/x", EntryKind.SPECIAL, file_type | 0o600, rdev=os.makedev(1, 3))
    assert special_file_type(entry, allow_devices) == (file_type if made else None)
