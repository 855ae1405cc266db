"""FListEvent rules (SPEC 3), RepoEvent/ReleaseEvent types, and the daemon's status.json."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from zos_upgrade.hub.models import FlistInfo, HubAnswerInvalid, InvalidName
from zos_upgrade.node.events import EventType, FListEvent, ReleaseEvent, RepoEvent, RepoFList
from zos_upgrade.node.state import DaemonState, StateFileError, UpgradeRecord, read_state, write_state
from zos_upgrade.publisher.base import Upgrade
from zos_upgrade.versions import ZERO, InvalidVersion, Version

MD5 = "0123456789abcdef0123456789abcdef"


def info(name: str, target: str | None = None, updated: int = 1) -> FlistInfo:
    return FlistInfo(name=name, size=1, updated=updated, type="symlink" if target else "regular",
                     md5=MD5, target=target)


def test_version_of_symlink_uses_target_and_regular_uses_name() -> None:
    link = FListEvent("zos", info("zos:development:latest.flist", "zos:development:v0.2.0.flist"))
    assert link.version() == Version(0, 2, 0) == link.must_version()
    assert link.fqdn() == "zos/zos:development:latest.flist"
    assert link.absolute() == "zos/zos:development:v0.2.0.flist"
    assert link.event_type is EventType.FLIST == "flist"
    regular = FListEvent("zos", info("zos:1.2.3-rc1.fl"))
    assert regular.version() == Version.parse("1.2.3-rc1")
    assert regular.absolute() == regular.fqdn() == "zos/zos:1.2.3-rc1.fl"


def test_cross_repo_target_resolves_into_its_repository() -> None:
    event = FListEvent("zos", info("latest.flist", "../other/x:1.0.0.flist"))
    assert event.absolute() == "other/x:1.0.0.flist"
    assert event.version() == Version(1, 0, 0)
    escaping = FListEvent("zos", info("latest.flist", "../../etc/passwd"))
    with pytest.raises(HubAnswerInvalid, match="not an flist of a repository"):
        escaping.absolute()


def test_no_version_raises_and_try_version_gives_zero() -> None:
    event = FListEvent("zos", info("latest.flist", "stable.flist"))
    with pytest.raises(InvalidVersion, match=r"stable\.flist"):
        event.version()
    with pytest.raises(InvalidVersion):
        event.must_version()
    assert event.try_version() == ZERO


def test_bad_repository_name_is_refused() -> None:
    with pytest.raises(InvalidName):
        FListEvent("../etc", info("x.flist"))


def test_commit_writes_the_info_atomically_read_only(tmp_path: Path) -> None:
    event = FListEvent("zos", info("latest.flist", "zos:v1.0.0.flist", updated=7))
    target = tmp_path / "version"
    event.commit(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o400
    doc = json.loads(target.read_text())
    assert doc == {"type": "symlink", "updated": 7, "md5": MD5, "name": "latest.flist",
                   "target": "zos:v1.0.0.flist", "size": 1}
    FListEvent("zos", info("latest.flist", "zos:v1.1.0.flist")).commit(target)  # over a 0400 file
    assert json.loads(target.read_text())["target"] == "zos:v1.1.0.flist"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["version"]


def test_repo_and_release_events() -> None:
    added = RepoFList("bins", info("a:1.0.0.flist"))
    event = RepoEvent("bins", to_add=[added], to_del=[])
    assert event.event_type is EventType.REPO and event.to_add == [added]
    release = ReleaseEvent(Version(1, 0, 0), Upgrade(flist="http://h/x.fl"), (Version(1, 0, 0),))
    assert release.event_type is EventType.RELEASE


def test_state_roundtrip_and_missing(tmp_path: Path) -> None:
    assert read_state(tmp_path / "nothing-here") is None
    state = DaemonState(
        updated=100.5, pid=42, current_version="1.2.3", last_check=99.0, last_result="upgraded",
        last_upgrade=UpgradeRecord(from_version="1.2.2", to_version="1.2.3", started=90.0, duration=9.5,
                                   bytes_downloaded=1234),
    )
    write_state(tmp_path / "state", state)
    raw = json.loads((tmp_path / "state" / "status.json").read_text())
    assert raw["last_upgrade"]["from"] == "1.2.2" and raw["last_upgrade"]["to"] == "1.2.3"
    assert read_state(tmp_path / "state") == state


def test_state_accepts_unknown_fields(tmp_path: Path) -> None:
    doc = {"updated": 1.0, "future_field": {"x": 1}, "last_result": "error"}
    (tmp_path / "status.json").write_text(json.dumps(doc))
    state = read_state(tmp_path)
    assert state is not None and state.last_result == "error"


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"", "not valid JSON"), (b"\x89PNG\x00\x01", "not valid JSON"), (b"[]", "wrong shape"),
     (b'{"pid": 1}', "wrong shape"), (b'{"updated": "now"}', "wrong shape"),
     (b'{"updated": 1, "last_result": "exploded"}', "wrong shape"),
     (b'{"updated": 1}' + b" " * (1 << 20), "larger than")],
)
def test_garbled_state_is_a_typed_error(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "status.json").write_bytes(content)
    with pytest.raises(StateFileError, match=why) as err:
        read_state(tmp_path)
    assert "status.json" in str(err.value)


def test_unreadable_state(tmp_path: Path) -> None:
    (tmp_path / "status.json").mkdir()
    with pytest.raises(StateFileError, match="cannot read daemon state"):
        read_state(tmp_path)
