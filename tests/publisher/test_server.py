"""`zos-upgrade release serve` as a child process: headers, 304s, 404s, and nothing outside the root."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import httpx

from tests.publisher.conftest import Site
from zos_upgrade.publisher.tree import ReleaseTree

SECRET = b"top secret, outside the release root"


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..`` or escapes)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_documents_are_json_with_etag_and_cache_control(site: Site, release_url: str) -> None:
    for name, cache in [("versions", "no-cache"), ("latest", "no-cache"), ("1.0.0", "public, max-age=3600")]:
        response = httpx.get(f"{release_url}/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == cache
        assert response.headers["etag"].startswith('"')
        assert response.content == (site.tree / name).read_bytes()


def test_conditional_requests_get_304(release_url: str) -> None:
    first = httpx.get(f"{release_url}/latest")
    etag = first.headers["etag"]
    for header in [etag, f"W/{etag}", f'"other", {etag}', "*"]:
        again = httpx.get(f"{release_url}/latest", headers={"If-None-Match": header})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert httpx.get(f"{release_url}/latest", headers={"If-None-Match": '"stale"'}).status_code == 200


def test_head_answers_headers_only(release_url: str) -> None:
    response = httpx.head(f"{release_url}/versions")
    assert response.status_code == 200 and response.content == b"" and "etag" in response.headers


def test_unknown_versions_and_names_get_404_json(release_url: str) -> None:
    for path in ["/9.9.9", "/", "/index.html", "/01.0.0", "/1.0", "/flists"]:
        response = httpx.get(release_url + path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json"
        assert json.loads(response.content)["error"] == "not found"
    assert "no 9.9.9 in this release tree" in httpx.get(f"{release_url}/9.9.9").text


def test_other_methods_are_refused(release_url: str) -> None:
    response = httpx.post(f"{release_url}/versions", content=b"[]")
    assert response.status_code == 405 and response.json() == {"error": "Method Not Allowed"}


def test_nothing_outside_the_root_is_ever_served(site: Site, release_url: str) -> None:
    outside = site.root / "secret.json"
    outside.write_bytes(SECRET)
    (site.tree / "9.0.0").symlink_to(outside)  # a valid name whose file lies outside the root
    (site.tree / "9.0.1").symlink_to("../secret.json")
    try:
        for path in [
            "/../secret.json", "/%2e%2e/secret.json", "/%2E%2E%2Fsecret.json", "/..%2fsecret.json",
            "/1.0.0/../../secret.json", "/9.0.0", "/9.0.1", "/1.0.0%00", "/versions%00.json",
            "//etc/passwd", "/%2fetc%2fpasswd", "/../../../../etc/passwd",
        ]:
            status, body = raw_get(release_url, path)
            assert status in (400, 404), path
            assert SECRET not in body and b"root:" not in body, path
    finally:
        for name in ("9.0.0", "9.0.1"):
            os.unlink(site.tree / name)
        outside.unlink()


def test_a_symlink_inside_the_root_is_served(site: Site, release_url: str) -> None:
    (site.tree / "1.0.1").symlink_to("1.0.0")
    try:
        assert httpx.get(f"{release_url}/1.0.1").content == (site.tree / "1.0.0").read_bytes()
    finally:
        os.unlink(site.tree / "1.0.1")


def test_a_new_release_is_served_at_once_with_a_new_etag(
    site: Site, release_url: str, tmp_path: Path
) -> None:
    before = httpx.get(f"{release_url}/versions")
    flist = tmp_path / "app.fl"
    flist.write_bytes(b"new")
    ReleaseTree(site.tree).add("1.1.0", flist_url=site.flist_url("1.1.0"), flist_file=flist, key=site.key)
    try:
        after = httpx.get(f"{release_url}/versions", headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200 and "1.1.0" in after.json()
        assert after.headers["etag"] != before.headers["etag"]
        assert httpx.get(f"{release_url}/latest").json() == "1.1.0"
    finally:  # put the shared tree back as the other tests expect it
        (site.tree / "1.1.0").unlink()
        (site.tree / "versions").write_text(json.dumps(["0.1.0", "0.2.0", "1.0.0"]))
        (site.tree / "latest").write_text('"1.0.0"')
