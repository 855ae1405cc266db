"""Our hub's /api/delta over loopback: the delta from a stored base to a stored flist, made once and
kept under the hub root; 404 without a base or a reproducible recipe; 400 for a malformed ``from``."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import httpx

from tests.support.deltas import flist_pair, store_release_pair
from tests.support.hub import HubFactory
from zos_upgrade.flist.delta import apply_delta

MAX = 64 * 1024 * 1024


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_delta_from_a_stored_base_rebuilds_the_flist(tmp_path: Path, start_hub: HubFactory) -> None:
    old, new = flist_pair(tmp_path, ".fl")
    with start_hub() as hub:
        store_release_pair(hub.root, old, new)
        url = f"{hub.url}/api/delta/alpha/zos:latest.fl"
        answer = httpx.get(url, params={"from": f"{'a' * 32},{md5(old)}"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/vnd.zos.flist-delta"
        assert apply_delta(answer.content, old.read_bytes(), MAX) == new.read_bytes()
        assert len(answer.content) < new.stat().st_size / 3
        kept = sorted(p.name for p in (hub.root / ".delta").iterdir())
        assert kept == [f"{md5(old)}-{md5(new)}"]
        # served again from what was kept: same bytes, an ETag that revalidates
        again = httpx.get(url, params={"from": md5(old)})
        assert again.content == answer.content
        assert httpx.get(url, params={"from": md5(old)},
                         headers={"If-None-Match": again.headers["etag"]}).status_code == 304
        head = httpx.head(url, params={"from": md5(old)})
        assert head.headers["content-length"] == str(len(answer.content))
        # the repositories listing does not show the hub's own folder
        assert ".delta" not in httpx.get(f"{hub.url}/api/repositories").text

        # no base the repository holds, the same file, another repository's name: 404, nothing made
        for base in ("b" * 32, md5(new)):
            miss = httpx.get(url, params={"from": base})
            assert miss.status_code == 404 and miss.json()["status"] == "error"
        for other in ("beta/zos:latest.fl", "alpha/missing.fl"):
            assert httpx.get(f"{hub.url}/api/delta/{other}", params={"from": md5(old)}).status_code == 404
        # a malformed from: 400 with the reason
        for bad in ("", "xyz", "A" * 32, ",".join(["c" * 32] * 9), "../" + "d" * 29):
            refused = httpx.get(url, params={"from": bad})
            assert refused.status_code == 400, bad
            assert "from" in refused.json()["message"]
        escape = httpx.get(f"{hub.url}/api/delta/..%2Fetc/passwd.fl", params={"from": md5(old)})
        assert escape.status_code in (400, 404)
        assert sorted(p.name for p in (hub.root / ".delta").iterdir()) == kept


def test_v1_gzip_delta_and_a_foreign_gzip_gets_none(tmp_path: Path, start_hub: HubFactory) -> None:
    old, new = flist_pair(tmp_path, ".flist")
    packer = zlib.compressobj(9, zlib.DEFLATED, 31, 9, zlib.Z_FILTERED)
    foreign = packer.compress(gzip.decompress(new.read_bytes())) + packer.flush()
    with start_hub() as hub:
        repo = hub.root / "alpha"
        repo.mkdir()
        (repo / "a:1.flist").write_bytes(old.read_bytes())
        (repo / "a:2.flist").write_bytes(new.read_bytes())
        (repo / "a:3.flist").write_bytes(foreign)
        answer = httpx.get(f"{hub.url}/api/delta/alpha/a:2.flist", params={"from": md5(old)})
        assert answer.status_code == 200
        assert apply_delta(answer.content, old.read_bytes(), MAX) == new.read_bytes()
        # deflated by another writer: the hub cannot rebuild it byte for byte, so it offers nothing
        assert httpx.get(f"{hub.url}/api/delta/alpha/a:3.flist", params={"from": md5(old)}).status_code == 404
        assert (hub.root / ".delta" / f"{md5(old)}-{hashlib.md5(foreign).hexdigest()}.none").is_file()
        # a base of another format is not a base
        (repo / "b:1.fl").write_bytes(b"SQLite format 3\0" + bytes(100))
        assert httpx.get(f"{hub.url}/api/delta/alpha/a:2.flist",
                         params={"from": md5(repo / "b:1.fl")}).status_code == 404


def test_a_delta_folder_that_leads_outside_is_never_used(tmp_path: Path, start_hub: HubFactory) -> None:
    old, new = flist_pair(tmp_path, ".fl")
    outside = tmp_path / "outside"
    outside.mkdir()
    with start_hub() as hub:
        store_release_pair(hub.root, old, new)
        (hub.root / ".delta").symlink_to(outside)
        (outside / f"{md5(old)}-{md5(new)}").write_bytes(b"planted")
        answer = httpx.get(f"{hub.url}/api/delta/alpha/zos:latest.fl", params={"from": md5(old)})
        assert answer.status_code == 404
        assert sorted(p.name for p in outside.iterdir()) == [f"{md5(old)}-{md5(new)}"]
        assert (outside / f"{md5(old)}-{md5(new)}").read_bytes() == b"planted"
