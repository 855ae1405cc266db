"""``hub export``: every exported file holds the bytes the live hub answers at its URL; TUF metadata
and targets; what the export refuses (a DEST in the way or inside the hub, links out of the block
folder) changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.hub import HubFactory, place_release
from tests.support.procs import zos_upgrade_cmd
from zos_upgrade.hubserver.config import HubConfig
from zos_upgrade.hubserver.export import ExportError, export_hub


def _url_of(site: Path, path: Path) -> str:
    rel = path.relative_to(site).as_posix()
    return "/" + (rel.removesuffix("/index.html") if rel.endswith("/index.html") else rel)


def _layout(root: Path) -> None:
    alpha = root / "alpha"
    os.symlink("rel.fl", alpha / "rel:latest.fl")
    (alpha / ".tag-v1").mkdir()
    os.symlink("../rel.fl", alpha / ".tag-v1" / "rel.fl")
    (root / "beta").mkdir(exist_ok=True)
    os.symlink("../alpha/.tag-v1", root / "beta" / "current")


def test_every_exported_file_is_the_live_hubs_answer(start_hub: HubFactory, tmp_path: Path) -> None:
    with start_hub(blocks=True) as hub:
        blocks = place_release(hub, tmp_path)
        _layout(hub.root)
        site = tmp_path / "site"
        assert hub.blocks is not None
        asyncio.run(export_hub(HubConfig(hub.root, blocks=hub.blocks), site))
        files = sorted(p for p in site.rglob("*") if p.is_file())
        urls = {_url_of(site, p): p for p in files}
        for expected in ("/api/repositories", "/api/flist", "/api/fileslist", "/api/flist/alpha",
                         "/api/flist/alpha/rel.fl", "/api/flist/alpha/rel.fl/light",
                         "/api/flist/alpha/rel:latest.fl/light", "/api/flist/alpha/rel.fl/metadata",
                         "/api/flist/alpha/tags/v1", "/api/flist/beta/current/taglink", "/alpha/rel.fl",
                         "/alpha/rel:latest.fl", "/alpha/rel.fl.md5", "/alpha/tags/v1/rel.fl"):
            assert expected in urls, f"{expected} not exported; exported: {sorted(urls)}"
        with httpx.Client(base_url=hub.url) as client:
            for url, path in urls.items():
                live = client.get(url)
                assert live.status_code == 200, url
                assert live.content == path.read_bytes(), f"{url} differs from the live hub's answer"
        exported_blocks = {p.name for p in (site / "blocks").rglob("*") if p.is_file()}
        assert exported_blocks == set(blocks)
        # a link is a copy of its target's bytes (a bucket has no symlinks)
        assert not any(p.is_symlink() for p in site.rglob("*"))


def test_tuf_metadata_and_consistent_snapshot_targets(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    (root / "alpha").mkdir(parents=True)
    flist = b"not parsed by the export" * 10
    (root / "alpha" / "rel.fl").write_bytes(flist)
    meta = root / ".tuf" / "alpha" / "metadata"
    meta.mkdir(parents=True)
    (meta / "1.root.json").write_text('{"signed": {"_type": "root"}}')
    (meta / "timestamp.json").write_text('{"signed": {"_type": "timestamp"}}')
    (meta / ".timestamp.json.tmp-1234").write_text("half written")
    site = tmp_path / "site"
    asyncio.run(export_hub(HubConfig(root), site))
    exported = sorted(p.name for p in (site / "tuf/alpha/metadata").iterdir())
    assert exported == ["1.root.json", "timestamp.json"]
    assert (site / "tuf/alpha/metadata/1.root.json").read_bytes() == (meta / "1.root.json").read_bytes()
    target = site / "tuf/alpha/targets" / f"{hashlib.sha256(flist).hexdigest()}.rel.fl"
    assert target.read_bytes() == flist
    assert not (site / ".tuf").exists() and not (site / "api/flist/.tuf").exists()


def test_a_dest_in_the_way_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    (root / "alpha").mkdir(parents=True)
    site = tmp_path / "site"
    site.mkdir()
    (site / "precious.txt").write_text("keep me")
    run = subprocess.run(zos_upgrade_cmd("hub", "export", str(site), "--root", str(root)),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "is not an empty folder" in run.stderr
    assert [p.name for p in site.iterdir()] == ["precious.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub", "site"]  # no partial tree left

    with pytest.raises(ExportError, match="lies inside"):
        asyncio.run(export_hub(HubConfig(root), root / "export"))
    assert not (root / "export").exists()


def test_links_in_the_block_folder_are_not_followed(tmp_path: Path) -> None:
    root, blocks, outside = tmp_path / "hub", tmp_path / "blocks", tmp_path / "outside"
    (root / "alpha").mkdir(parents=True)
    outside.mkdir()
    secret_id = "ab" * 16
    (outside / secret_id).write_text("not a block of this hub")
    blocks.mkdir()
    os.symlink(outside, blocks / "ab")  # a fan-out folder replaced by a link
    os.symlink(outside / secret_id, blocks / ("cd" * 16))  # a flat block that is a link
    good = "ef" * 16
    (blocks / "ef").mkdir()
    (blocks / "ef" / good).write_bytes(b"held")
    site = tmp_path / "site"
    report = asyncio.run(export_hub(HubConfig(root, blocks=blocks), site))
    assert report.blocks == 1
    assert sorted(p.name for p in (site / "blocks").rglob("*") if p.is_file()) == [good]
