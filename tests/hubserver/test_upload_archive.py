"""``POST /api/flist/me/upload``: a ``.tar.gz`` our hub packs into an flist and its block store, as the
real 0-hub does; every hostile archive refused whole with nothing stored; and the client's handling of
the real hub's 500 refusals (not retried, its message shown) against a server that answers like it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.hub import TOKEN_A, Hub, HubFactory, hub_process
from tests.support.procs import free_port, serving, zos_upgrade_cmd
from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.models import WriteRefused
from zos_upgrade.net import Backoff, RetryPolicy

FAST = RetryPolicy(attempts=3, backoff=Backoff(base=0.01, cap=0.01), deadline=10.0)
CONFIG = f'max_upload_bytes = 1000000\nmax_inflated_bytes = 3000000\n[tokens]\n"{TOKEN_A}" = "alpha"\n'

Build = Callable[[tarfile.TarFile], None]


def _archive(path: Path, build: Build) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        build(tar)
    path.write_bytes(buffer.getvalue())
    return path


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE,
         link: str = "", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, mode, 1_700_000_000
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _release(tar: tarfile.TarFile) -> None:
    _add(tar, "bin", kind=tarfile.DIRTYPE, mode=0o755)
    _add(tar, "bin/tool", bytes(range(256)) * 4000, mode=0o4755)  # setuid kept, like tar -p
    _add(tar, "etc", kind=tarfile.DIRTYPE, mode=0o755)
    _add(tar, "etc/motd", b"packed by the hub\n")
    _add(tar, "etc/motd.old", kind=tarfile.LNKTYPE, link="etc/motd")
    _add(tar, "etc/tool", kind=tarfile.SYMTYPE, link="../bin/tool")
    _add(tar, "etc/localtime", kind=tarfile.SYMTYPE, link="/usr/share/zoneinfo/UTC")


def _stored(hub: Hub) -> tuple[list[str], list[str]]:
    assert hub.blocks is not None
    names = sorted(str(p.relative_to(hub.root)) for p in hub.root.rglob("*"))
    blocks = sorted(p.name for p in hub.blocks.rglob("*") if p.is_file())
    return names, blocks


def test_an_archive_becomes_an_flist_with_its_blocks_in_the_hub(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    archive = _archive(tmp_path / "app.tar.gz", _release)

    async def upload(hub: Hub) -> dict[str, object]:
        async with HubClient(hub.url, token=TOKEN_A, retry=FAST) as client:
            return await client.upload(archive)

    with start_hub(blocks=True, config=CONFIG) as hub:
        reply = asyncio.run(upload(hub))
        # the real 0-hub's reply: the stored name (.tar.gz -> .flist) and zflist putdir's JSON output
        assert reply == {"name": "app.flist", "files": {
            "success": True, "error": None, "status": 0,
            "response": {"regular": 3, "symlink": 2, "directory": 2, "special": 0, "failure": 0,
                         "fullsize": 1_024_000 + 2 * len(b"packed by the hub\n")},
        }}
        light = httpx.get(f"{hub.url}/api/flist/alpha/app.flist/light").json()
        assert light["name"] == "app.flist"
        assert hub.blocks is not None
        out = tmp_path / "out"
        run = subprocess.run(zos_upgrade_cmd("flist", "unpack", str(hub.root / "alpha/app.flist"), str(out),
                                             "--store", f"dir://{hub.blocks}"),
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    assert (out / "bin/tool").read_bytes() == bytes(range(256)) * 4000
    assert stat.S_IMODE((out / "bin/tool").stat().st_mode) == 0o4755
    assert (out / "etc/motd.old").read_text() == "packed by the hub\n"
    assert os.readlink(out / "etc/tool") == "../bin/tool"
    assert os.readlink(out / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert int((out / "etc/motd").stat().st_mtime) == 1_700_000_000
    assert not [p for p in (tmp_path / "hub").iterdir() if p.name.startswith(".")], "work folder left"


def _dev(tar: tarfile.TarFile) -> None:
    _add(tar, "dev/sda", kind=tarfile.BLKTYPE)


HOSTILE: dict[str, tuple[Build, str]] = {
    "absolute name": (lambda t: _add(t, "/etc/passwd", b"root::0:0"), "absolute names and '..'"),
    "dot-dot name": (lambda t: _add(t, "a/../../x", b"x"), "absolute names and '..'"),
    "block device": (_dev, "device file or FIFO"),
    "char device": (lambda t: _add(t, "null", kind=tarfile.CHRTYPE), "device file or FIFO"),
    "fifo": (lambda t: _add(t, "pipe", kind=tarfile.FIFOTYPE), "device file or FIFO"),
    "symlink out": (
        lambda t: _add(t, "a/up", kind=tarfile.SYMTYPE, link="../../etc"), "points out of the tree"
    ),
    "write through a symlink": (
        lambda t: (_add(t, "x", kind=tarfile.SYMTYPE, link="/etc"), _add(t, "x/passwd", b"owned")),
        "written through a link",
    ),
    "file over a symlink": (
        lambda t: (_add(t, "y", kind=tarfile.SYMTYPE, link="/etc/passwd"), _add(t, "y", b"owned")),
        "replaces a symlink",
    ),
    "hard link out": (lambda t: _add(t, "h", kind=tarfile.LNKTYPE, link="/etc/shadow"), "hard link"),
    "bomb": (lambda t: _add(t, "zeros", bytes(4_000_000)), "inflates to more than 3000000 bytes"),
}


@pytest.fixture(scope="module")
def archive_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One hub for every hostile archive: each test checks it stored nothing, whatever ran before."""
    work = tmp_path_factory.mktemp("archive-hub")
    with hub_process(work / "hub", work, blocks=True, config=CONFIG) as hub:
        (hub.root / "alpha").mkdir()
        yield hub


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_whole_and_stores_nothing(
    archive_hub: Hub, tmp_path: Path, case: str
) -> None:
    build, reason = HOSTILE[case]

    def hostile(tar: tarfile.TarFile) -> None:
        _add(tar, "ok.txt", b"a fine first member")  # unpacked, then thrown away with the rest
        build(tar)

    archive = _archive(tmp_path / "evil.tar.gz", hostile)
    hub = archive_hub
    before = _stored(hub)
    reply = httpx.post(f"{hub.url}/api/flist/me/upload", headers={"Authorization": f"bearer {TOKEN_A}"},
                       files={"file": ("evil.tar.gz", archive.read_bytes())}, timeout=60)
    assert reply.status_code == 400, reply.text
    assert reply.json()["status"] == "error"
    assert reply.json()["message"].startswith("archive refused: ") and reason in reply.json()["message"]
    assert _stored(hub) == before == (["alpha"], [])
    assert not Path("/etc/passwd").read_text().startswith("owned")


def test_not_a_gzip_tar_and_wrong_suffixes(start_hub: HubFactory, tmp_path: Path) -> None:
    headers = {"Authorization": f"bearer {TOKEN_A}"}
    with start_hub(blocks=True, config=CONFIG) as hub:
        garbage = httpx.post(f"{hub.url}/api/flist/me/upload", headers=headers,
                             files={"file": ("x.tar.gz", b"\x1f\x8b not really gzip")})
        assert garbage.status_code == 400 and "not a valid .tar.gz" in garbage.json()["message"]
        flist_there = httpx.post(f"{hub.url}/api/flist/me/upload", headers=headers,
                                 files={"file": ("x.flist", b"x")})
        assert flist_there.status_code == 400 and "this file is not allowed" in flist_there.json()["message"]
        archive_there = httpx.post(f"{hub.url}/api/flist/me/upload-flist", headers=headers,
                                   files={"file": ("x.tar.gz", b"x")})
        assert archive_there.status_code == 400
        assert "this file is not allowed" in archive_there.json()["message"]
        assert _stored(hub) == ([], [])


def test_the_real_hubs_500_refusal_reaches_the_user_and_is_not_retried(tmp_path: Path) -> None:
    flist = tmp_path / "app.flist"
    flist.write_bytes(b"an flist")
    message = "unauthorized upload, contents is not fully present on backend"
    port = free_port()
    body = json.dumps({"status": "error", "message": message})
    with serving([sys.executable, "-m", "tests.support.fixed_answer", str(port), "500", body], port):
        url = f"http://127.0.0.1:{port}"

        async def upload() -> None:
            async with HubClient(url, token=TOKEN_A, retry=FAST) as client:
                await client.upload(flist)

        with pytest.raises(WriteRefused, match=message) as refused:
            asyncio.run(upload())
        assert refused.value.status == 500
        assert httpx.get(url + "/__count__").text == "1"


def test_a_busy_hubs_503_is_retried_and_its_reason_kept(tmp_path: Path) -> None:
    flist = tmp_path / "app.flist"
    flist.write_bytes(b"an flist")
    port = free_port()
    body = json.dumps({"status": "error", "message": "upload checks busy; retry later"})
    with serving([sys.executable, "-m", "tests.support.fixed_answer", str(port), "503", body], port):
        url = f"http://127.0.0.1:{port}"

        async def upload() -> None:
            async with HubClient(url, token=TOKEN_A, retry=FAST) as client:
                await client.upload(flist)

        with pytest.raises(Exception, match="upload checks busy; retry later"):
            asyncio.run(upload())
        assert httpx.get(url + "/__count__").text == str(FAST.attempts)
