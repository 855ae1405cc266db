"""The read side of our hub over a real uvicorn: tags, taglinks, cross-links, downloads, hostile names."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.hub import GOLDEN_FLISTS, Hub, hub_process, make_golden_layout


def make_rich_layout(root: Path) -> Path:
    """golden/ plus: a repo with a tag, a taglink, a cross-repo link, and links that leave the root."""
    make_golden_layout(root)
    other = root / "other"
    other.mkdir()
    shutil.copyfile(GOLDEN_FLISTS / "v1.flist", other / "app:1.0.0.flist")
    os.symlink("../golden/v2.flist", other / "cross.flist")  # cross-repo symlink
    tag = other / ".tag-release"
    tag.mkdir()
    os.symlink("../../golden/v1.flist", tag / "base.flist")
    os.symlink("../other/.tag-release", other / "stable")  # taglink
    secret = root.parent / "secret.flist"
    secret.write_bytes(b"not for you")
    os.symlink(str(secret), other / "escape.flist")  # absolute, outside the root
    os.symlink("../../secret.flist", other / "escape2.flist")  # relative, outside the root
    os.symlink("nothing-here.flist", other / "dangling.flist")
    (root / "outside-repo").symlink_to(root.parent)  # a repository folder outside the root
    return root


def raw_get(hub: Hub, path: str, method: str = "GET") -> tuple[int, bytes]:
    """A request with the path sent exactly as given (httpx would normalise dot segments)."""
    parts = urlsplit(hub.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def rich_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    # read-only tests share one server: starting uvicorn costs about a second
    work = tmp_path_factory.mktemp("rich")
    with hub_process(make_rich_layout(work / "store"), work) as hub:
        yield hub


def test_repo_listing_shows_tags_taglinks_and_cleaned_targets(rich_hub: Hub) -> None:
    listing = {item["name"]: item for item in httpx.get(rich_hub.url + "/api/flist/other").json()}
    assert set(listing) == {"app:1.0.0.flist", "cross.flist", "release", "stable", "dangling.flist"}
    assert listing["cross.flist"]["type"] == "symlink"
    assert listing["cross.flist"]["target"] == "golden/v2.flist"  # "../" removed, as the real hub does
    assert listing["cross.flist"]["size"] == "2.57 KB"  # of the target
    assert listing["release"] == {
        "name": "release",
        "size": "0 KB",
        "updated": listing["release"]["updated"],
        "type": "tag",
    }
    assert listing["stable"]["type"] == "taglink" and listing["stable"]["target"] == "other/tags/release"
    assert listing["app:1.0.0.flist"]["type"] == "regular"


def test_links_leaving_the_root_are_never_followed(rich_hub: Hub) -> None:
    for name in ("escape.flist", "escape2.flist", "dangling.flist"):
        answer = httpx.get(f"{rich_hub.url}/api/flist/other/{name}/light")
        assert answer.status_code == 404 and answer.json() == {
            "status": "error",
            "message": "source not found",
        }
        assert httpx.get(f"{rich_hub.url}/other/{name}").status_code == 404
    assert b"not for you" not in httpx.get(rich_hub.url + "/api/fileslist").content
    assert httpx.get(rich_hub.url + "/api/flist/outside-repo/secret.flist/light").status_code == 404
    assert "outside-repo" not in httpx.get(rich_hub.url + "/api/flist").text


def test_cross_repo_light_follows_the_link(rich_hub: Hub) -> None:
    light = httpx.get(rich_hub.url + "/api/flist/other/cross.flist/light").json()
    assert light["target"] == "../golden/v2.flist"  # /light keeps the raw link text
    assert light["md5"] == hashlib.md5((GOLDEN_FLISTS / "v2.flist").read_bytes()).hexdigest()


def test_tag_members_listing_and_download(rich_hub: Hub) -> None:
    members = httpx.get(rich_hub.url + "/api/flist/other/tags/release").json()
    assert [(m["name"], m["type"], m["target"]) for m in members] == [
        ("base.flist", "symlink", "golden/v1.flist")
    ]
    body = httpx.get(rich_hub.url + "/other/tags/release/base.flist").content
    assert body == (GOLDEN_FLISTS / "v1.flist").read_bytes()
    assert httpx.get(rich_hub.url + "/api/flist/other/tags/nope").status_code == 404
    assert httpx.get(rich_hub.url + "/api/flist/other/stable/taglink").json() == {
        "target": "other/tags/release"
    }


def test_downloads_md5_etag_and_ranges(rich_hub: Hub) -> None:
    data = (GOLDEN_FLISTS / "v2.flist").read_bytes()
    url = rich_hub.url + "/golden/app:latest.flist"
    full = httpx.get(url)
    assert full.status_code == 200 and full.content == data
    etag = full.headers["etag"]
    assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = httpx.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    rest = httpx.get(url, headers={"Range": f"bytes={len(data) - 5}-"})
    assert rest.content == data[-5:]
    beyond = httpx.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
    stale = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": '"another-version"'})
    assert stale.status_code == 200 and stale.content == data
    head = httpx.head(url)
    assert (
        head.status_code == 200 and head.headers["content-length"] == str(len(data)) and head.content == b""
    )
    md5 = httpx.get(rich_hub.url + "/golden/v2.flist.md5")
    assert md5.text == hashlib.md5(data).hexdigest() + "\n" and md5.headers["content-type"].startswith(
        "text/plain"
    )


def test_downloads_carry_the_real_hubs_headers_and_its_html_404(rich_hub: Hub) -> None:
    """werkzeug's send_file under the real hub: Content-Disposition inline with the asked name (quoted
    when it is not a token), Last-Modified of the file, Cache-Control no-cache; a missing flist is
    Flask's HTML page, not JSON."""
    plain = httpx.get(rich_hub.url + "/golden/v1.flist")
    assert plain.headers["content-disposition"] == "inline; filename=v1.flist"
    assert plain.headers["cache-control"] == "no-cache"
    mtime = (rich_hub.root / "golden" / "v1.flist").stat().st_mtime
    assert parsedate_to_datetime(plain.headers["last-modified"]).timestamp() == int(mtime)
    link = httpx.get(rich_hub.url + "/golden/app:latest.flist")
    assert link.headers["content-disposition"] == 'inline; filename="app:latest.flist"'
    target_mtime = (rich_hub.root / "golden" / "v2.flist").stat().st_mtime
    assert parsedate_to_datetime(link.headers["last-modified"]).timestamp() == int(target_mtime)
    tagged = httpx.get(rich_hub.url + "/other/tags/release/base.flist")
    assert tagged.headers["content-disposition"] == "inline; filename=base.flist"
    for missing in ("/golden/nope.flist", "/other/tags/release/nope.flist", "/golden/nope.flist.md5",
                    "/nouser/v1.flist", "/other/escape.flist"):
        answer = httpx.get(rich_hub.url + missing)
        assert answer.status_code == 404, missing
        assert answer.headers["content-type"].startswith("text/html") and "<h1>Not Found</h1>" in answer.text


def test_every_json_answer_has_an_etag_and_honours_if_none_match(rich_hub: Hub) -> None:
    for path in (
        "/api/repositories",
        "/api/flist",
        "/api/fileslist",
        "/api/flist/golden",
        "/api/flist/golden/v1.flist/light",
        "/api/flist/golden/v1.flist",
        "/api/flist/golden/v2.flist/metadata",
        "/api/flist/golden/nope.flist/light",
    ):
        first = httpx.get(rich_hub.url + path)
        assert first.headers.get("etag"), path
        again = httpx.get(rich_hub.url + path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == (304 if first.status_code == 200 else first.status_code), path
        other = httpx.get(rich_hub.url + path, headers={"If-None-Match": '"something-else"'})
        assert other.status_code == first.status_code and other.content == first.content


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/api/flist/%2e%2e/v1.flist/light", "contains '..'"),
        ("/api/flist/golden/%2e%2e/light", "contains '..'"),
        ("/api/flist/golden/..%2fgolden/light", None),  # %2f decodes to '/': another route, 404
        ("/api/flist/golden/a%00b/light", "NUL"),
        ("/api/flist/golden/%252e%252e/light", "'%'"),
        ("/api/flist/golden/" + "a" * 10240 + "/light", "10240 bytes long"),
        ("/api/flist/" + "r" * 300, "300 bytes long"),
        ("/golden/%2e%2e", "contains '..'"),
        ("/%2e%2e/golden", "contains '..'"),
        ("/golden/.hidden.flist", "starts with '.'"),
        ("/api/flist/golden/v1.flist/../../../../etc/passwd", None),
    ],
    ids=[
        "dotdot-repo",
        "dotdot-name",
        "encoded-slash",
        "nul",
        "double-encoded",
        "10kb-name",
        "long-repo",
        "download-dotdot",
        "download-dotdot-repo",
        "hidden",
        "literal-dotdot",
    ],
)
def test_hostile_names_are_refused_before_touching_the_disk(
    rich_hub: Hub, path: str, why: str | None
) -> None:
    status, body = raw_get(rich_hub, path)
    if why is None:
        assert status == 404
    else:
        assert status == 400, body
        assert why in body.decode()
    assert b"not for you" not in body


def test_unknown_routes_and_methods_carry_an_etag_too(rich_hub: Hub) -> None:
    for answer, status in (
        (httpx.get(rich_hub.url + "/a/b/c/d/e/f"), 404),
        (httpx.post(rich_hub.url + "/api/repositories"), 405),
        (httpx.get(rich_hub.url + "/api/flist/nouser"), 404),
    ):
        assert answer.status_code == status and answer.headers["etag"]


def test_blocks_are_404_without_a_block_store(rich_hub: Hub) -> None:
    assert httpx.get(rich_hub.url + "/blocks/ab/" + "ab" * 16).status_code == 404
