"""Names and RepoFList: pure logic, no server."""

from __future__ import annotations

import pytest

from zos_upgrade.hub import FlistInfo, HubAnswerInvalid, HubError, InvalidName, RepoEntry, RepoFList
from zos_upgrade.hub.names import flist_filename, split_fqdn, validate_name
from zos_upgrade.versions import InvalidVersion, Version

MD5 = "0" * 32


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("%2e%2e", "'%'"),
        (".hidden", "starts with '.'"),
        ("x" * 10240, "10240 bytes long"),
        ("é" * 128, "256 bytes long"),
    ],
)
def test_bad_names(bad: str, why: str) -> None:
    with pytest.raises(InvalidName, match=why):
        validate_name(bad)


def test_good_names_and_flist_filenames() -> None:
    for good in ("zos:production:latest.flist", "app:1.2.3-rc1.fl", "tf-zos-bins", "x" * 255):
        assert validate_name(good) == good
    assert flist_filename("v2") == "v2.flist"
    assert flist_filename("v2.fl") == "v2.fl"
    assert flist_filename("v2.flist") == "v2.flist"
    assert split_fqdn("golden/v1.flist") == ("golden", "v1.flist")
    for bad in ("golden", "a/b/c", "../x", "golden/.."):
        with pytest.raises(InvalidName):
            split_fqdn(bad)


def light(name: str, target: str | None = None) -> FlistInfo:
    return FlistInfo(name, 1, 2, "symlink" if target else "regular", MD5, target, 3 if target else None)


def test_repo_flist_regular_and_symlink() -> None:
    regular = RepoFList("tf-zos", light("zos:v0.2.0.flist"))
    assert regular.fqdn() == regular.absolute() == "tf-zos/zos:v0.2.0.flist"
    assert regular.version() == Version(0, 2, 0)
    link = RepoFList("tf-zos", light("zos:production:latest.flist", "zos:1.2.3-rc1.flist"))
    assert link.fqdn() == "tf-zos/zos:production:latest.flist"
    assert link.absolute() == "tf-zos/zos:1.2.3-rc1.flist"
    assert str(link.version()) == "1.2.3-rc1"


def test_repo_flist_cross_repo_targets() -> None:
    raw = RepoFList("tf-zos", light("latest.flist", "../other/zos:2.0.0.flist"))
    assert raw.absolute() == "other/zos:2.0.0.flist"
    cleaned = RepoFList(
        "tf-zos", RepoEntry("latest.flist", "1.00 KB", 2, "symlink", "other/zos:2.0.0.flist", 3)
    )
    assert cleaned.absolute() == "other/zos:2.0.0.flist"
    same = RepoFList("tf-zos", RepoEntry("latest.flist", "1.00 KB", 2, "symlink", "zos:2.0.0.flist", 3))
    assert same.absolute() == "tf-zos/zos:2.0.0.flist"
    assert raw.version() == cleaned.version() == Version(2, 0, 0)
    for target in ("../../etc/passwd", "../a/b/c.flist", "/etc/passwd"):
        with pytest.raises(HubAnswerInvalid, match="not an flist of a repository"):
            RepoFList("tf-zos", light("x.flist", target)).absolute()


def test_repo_flist_versions_that_are_not() -> None:
    flist = RepoFList("tf-zos", light("latest.flist", "nightly.flist"))
    with pytest.raises(InvalidVersion):
        flist.version()
    assert flist.try_version() == Version(0, 0, 0)
    assert RepoFList("r", light("notes.txt")).try_version() == Version(0, 0, 0)
    with pytest.raises(HubError, match="without a HubClient"):
        import asyncio

        asyncio.run(flist.files())
