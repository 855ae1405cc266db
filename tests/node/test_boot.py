"""Boot files: the formats the real bootstrap writes, atomic rewrites, and every garbled file."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.hub.models import FlistInfo, RepoEntry
from zos_upgrade.node.boot import (
    BINARIES_FILE,
    FLIST_INFO_FILE,
    FLIST_NAME_FILE,
    Boot,
    BootFileError,
    BootMethod,
)
from zos_upgrade.node.events import FListEvent
from zos_upgrade.versions import ZERO, Version

MD5 = "0123456789abcdef0123456789abcdef"


def write_boot(
    root: Path, name: str | None, info: bytes | str | None, bins: bytes | str | None = None
) -> None:
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    if name is not None:
        (tmp / "flist.name").write_text(name)
    if info is not None:
        (tmp / "flist.info").write_bytes(info.encode() if isinstance(info, str) else info)
    if bins is not None:
        (tmp / "bins.info").write_bytes(bins.encode() if isinstance(bins, str) else bins)


def test_constants_are_the_originals() -> None:
    assert FLIST_NAME_FILE == "/tmp/flist.name"
    assert FLIST_INFO_FILE == "/tmp/flist.info"
    assert BINARIES_FILE == "/tmp/bins.info"


def test_reads_what_the_bootstrap_writes_for_a_symlink(tmp_path: Path) -> None:
    # serde's output: type, updated, md5, name, target; no size
    info = ('{"type":"symlink","updated":1700000000,"md5":"' + MD5 + '",'
            '"name":"zos:production:latest.flist","target":"zos:v3.1.2.flist"}')
    write_boot(tmp_path, "tf-zos/zos:production:latest.flist", info)
    boot = Boot(tmp_path)
    assert boot.detect_boot_method() is BootMethod.FLIST
    assert boot.name() == "tf-zos/zos:production:latest.flist"
    current = boot.current()
    assert isinstance(current, FListEvent)
    assert current.repo == "tf-zos" and current.info.md5 == MD5 and current.info.size == 0
    assert current.absolute() == "tf-zos/zos:v3.1.2.flist"
    assert boot.version() == Version(3, 1, 2) == boot.must_version() == boot.try_version()


@pytest.mark.parametrize(
    "info",
    [
        # regular flist, serde writes target: null
        '{"type":"regular","updated":5,"md5":"0123456789abcdef0123456789abcdef","name":"zos:v1.2.3.flist","target":null}',
        # missing target, other field order
        '{"name":"zos:v1.2.3.flist","md5":"0123456789abcdef0123456789abcdef","updated":5,"type":"regular"}',
        # the Go upgrader's shape: "hash" for md5, empty target, size
        '{"name":"zos:v1.2.3.flist","target":"","type":"regular","updated":5,"hash":"0123456789abcdef0123456789abcdef","size":42}',
        # no md5 at all, an unknown extra field
        '{"updated":5,"type":"regular","name":"zos:v1.2.3.flist","extra":[1,2]}',
    ],
)
def test_field_order_and_missing_fields(tmp_path: Path, info: str) -> None:
    write_boot(tmp_path, "tf-zos/zos:v1.2.3.flist", info)
    current = Boot(tmp_path).current()
    assert current.info.target is None and current.info.updated == 5
    assert Boot(tmp_path).version() == Version(1, 2, 3)


def test_no_boot_files_means_other_and_zero(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    boot = Boot(tmp_path)
    assert boot.detect_boot_method() is BootMethod.OTHER
    assert boot.name() == ""
    assert boot.current_bins() == {}
    with pytest.raises(BootFileError, match="does not exist"):
        boot.version()
    with caplog.at_level(logging.WARNING):
        assert boot.try_version() == ZERO
    assert any("assuming 0.0.0" in r.getMessage() for r in caplog.records)


GARBLED_INFO = [
    (b"", "not valid JSON"),
    (bytes(range(256)) * 4, "not valid JSON"),
    (b"[1, 2, 3]", "wrong shape"),
    (b'{"name": "zos:v1.2.3.flist", "type": "regular"}', "wrong shape"),  # no updated
    (b'{"name": "zos:v1.2.3.flist", "type": "regular", "updated": "yesterday"}', "wrong shape"),
    (b'{"name": "zos:v1.2.3.flist", "type": "weird", "updated": 1}', "wrong shape"),
    (b'{"name": "other:v1.2.3.flist", "type": "regular", "updated": 1}', "disagree"),
    (b'{"name": "zos:v1.2.3.flist", "type": "regular", "updated": 1}' + b" " * 70000, "larger than"),
]


@pytest.mark.parametrize(("info", "why"), GARBLED_INFO)
def test_garbled_info_file_is_a_clear_error_and_zero(
    tmp_path: Path, info: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_boot(tmp_path, "tf-zos/zos:v1.2.3.flist", info)
    boot = Boot(tmp_path)
    with pytest.raises(BootFileError, match=why) as err:
        boot.version()
    assert "flist.info" in str(err.value) or "flist.name" in str(err.value)
    with caplog.at_level(logging.WARNING):
        assert boot.try_version() == ZERO
    assert [r for r in caplog.records if r.levelno == logging.WARNING and "0.0.0" in r.getMessage()]


@pytest.mark.parametrize(
    ("name", "why"),
    [(b"", "not of the form"), (b"\xff\xfe\x00garbage", "not UTF-8"), (b"no-slash", "not of the form"),
     (b"../../etc/passwd", "not of the form"), (b"a/../b", "not of the form|contains")],
)
def test_garbled_name_file(tmp_path: Path, name: bytes, why: str) -> None:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "flist.name").write_bytes(name)
    boot = Boot(tmp_path)
    assert boot.detect_boot_method() is BootMethod.FLIST
    with pytest.raises(BootFileError, match=why):
        boot.name()
    assert boot.try_version() == ZERO


def test_info_file_that_is_a_directory_is_unreadable(tmp_path: Path) -> None:
    write_boot(tmp_path, "tf-zos/zos:v1.2.3.flist", None)
    (tmp_path / "tmp" / "flist.info").mkdir()
    with pytest.raises(BootFileError, match="cannot read boot flist info file"):
        Boot(tmp_path).version()
    assert Boot(tmp_path).try_version() == ZERO


def test_target_without_version(tmp_path: Path) -> None:
    write_boot(tmp_path, "tf-zos/latest.flist",
               '{"type":"symlink","updated":1,"md5":"","name":"latest.flist","target":"stable.flist"}')
    with pytest.raises(BootFileError, match="no semver version"):
        Boot(tmp_path).version()
    assert Boot(tmp_path).try_version() == ZERO


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    # pytest's tmp_path lives under a 0700 directory: an unprivileged child could not even reach it
    path = Path(tempfile.mkdtemp(prefix="zu-boot-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_permission_denied_in_an_unprivileged_reader(world_readable_dir: Path) -> None:
    boot = Boot(world_readable_dir)
    info = FlistInfo(name="zos:v2.0.0.flist", size=1, updated=1, type="regular", md5=MD5)
    boot.set(FListEvent("tf-zos", info))
    assert stat.S_IMODE(boot.info_file.stat().st_mode) == 0o400  # owner root: nobody else may read it
    # the interpreter lives under /root, out of an unprivileged user's reach: fork instead of exec
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                boot.version()
                report = "NO ERROR"
            except BootFileError as exc:
                report = f"ERR {exc}"
            report += f"\nTRY {boot.try_version()}"
            os.write(write_end, report.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    os.waitpid(pid, 0)
    assert "ERR cannot read boot flist info file" in output and "Permission denied" in output
    assert "TRY 0.0.0" in output


def test_set_writes_atomically_and_can_replace_a_read_only_info(tmp_path: Path) -> None:
    boot = Boot(tmp_path)
    first = FListEvent("tf-zos", FlistInfo(name="latest.flist", size=10, updated=1, type="symlink",
                                           md5=MD5, target="zos:v1.0.0.flist"))
    boot.set(first)
    assert stat.S_IMODE(boot.info_file.stat().st_mode) == 0o400
    assert boot.name_file.read_text() == "tf-zos/latest.flist"
    doc = json.loads(boot.info_file.read_text())
    assert list(doc)[:5] == ["type", "updated", "md5", "name", "target"]
    assert boot.current() == first and boot.version() == Version(1, 0, 0)
    second = FListEvent("tf-zos", FlistInfo(name="latest.flist", size=11, updated=2, type="symlink",
                                            md5=MD5, target="zos:v1.1.0.flist"))
    boot.set(second)
    assert boot.version() == Version(1, 1, 0)
    assert [p.name for p in (tmp_path / "tmp").iterdir() if ".zu-tmp-" in p.name] == []


def test_bins_roundtrip_and_bootstrap_format(tmp_path: Path) -> None:
    # what install_packages of the bootstrap writes: listing items, no md5, no size
    bins = json.dumps({
        "tf-zos-bins/yggdrasil:0.4.0.flist": {"type": "regular", "updated": 3, "md5": "",
                                              "name": "yggdrasil:0.4.0.flist", "target": None},
        "tf-zos-bins/zinit.flist": {"type": "symlink", "updated": 4, "name": "zinit.flist",
                                    "target": "zinit:0.2.14.flist"},
    })
    write_boot(tmp_path, None, None, bins)
    boot = Boot(tmp_path)
    current = boot.current_bins()
    assert sorted(current) == ["tf-zos-bins/yggdrasil:0.4.0.flist", "tf-zos-bins/zinit.flist"]
    assert current["tf-zos-bins/zinit.flist"].version() == Version(0, 2, 14)
    assert current["tf-zos-bins/yggdrasil:0.4.0.flist"].repo == "tf-zos-bins"
    entry = RepoEntry(name="new:1.0.0.flist", size="1.2 KB", updated=9, type="regular")
    boot.set_bins({**current, "tf-zos-bins/new:1.0.0.flist": RepoFList("tf-zos-bins", entry)})
    again = boot.current_bins()
    assert again["tf-zos-bins/new:1.0.0.flist"].info.updated == 9
    assert again["tf-zos-bins/zinit.flist"] == current["tf-zos-bins/zinit.flist"]


@pytest.mark.parametrize(
    ("bins", "why"),
    [(b"", "not valid JSON"), (b"\x00\x01garbage", "not valid JSON"), (b"[]", "wrong shape"),
     (b'{"no-slash": {"name": "x", "type": "regular", "updated": 1}}', "not of the form"),
     (b'{"r/x.flist": {"name": "y.flist", "type": "regular", "updated": 1}}', "holds the info of"),
     (b'{"r/x.flist": {"name": "x.flist", "type": "regular", "updated": "soon"}}', "wrong shape")],
)
def test_garbled_bins_file(tmp_path: Path, bins: bytes, why: str) -> None:
    write_boot(tmp_path, None, None, bins)
    with pytest.raises(BootFileError, match=why):
        Boot(tmp_path).current_bins()


def test_set_bins_refuses_a_mismatched_key(tmp_path: Path) -> None:
    info = FlistInfo(name="a.flist", size=1, updated=1, type="regular", md5=MD5)
    with pytest.raises(BootFileError, match="describes"):
        Boot(tmp_path).set_bins({"r/b.flist": info})
    assert not (tmp_path / "tmp" / "bins.info").exists()
