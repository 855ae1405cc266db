"""Our hub against the REAL 0-hub (Flask, commit 04bda34e), endpoint by endpoint, on one storage folder.

The storage is made the way the real hub makes it: the golden flists of tests/data/hub-responses
copied in, plus an flist of ours uploaded through the real hub's `upload-flist` (it checks it with
the real zflist against its real 0-db), a link, a tag and a cross-tag made through its own API.
Then both hubs serve that folder and every read endpoint is asked of both.

``KNOWN`` lists each difference that remains, by endpoint and aspect; docs/hub-compat.md gives the
reason of each. The test fails on a difference not listed AND on a listed one that went away, so
the table and the docs stay true.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.hub import hub_process, make_golden_layout
from tests.support.procs import zos_upgrade_cmd
from tests.support.upstream import ZdbServer, running_0hub

# (method, path) asked of both hubs
READ_ENDPOINTS: list[tuple[str, str]] = [
    ("GET", "/api/repositories"),
    ("GET", "/api/flist"),
    ("GET", "/api/fileslist"),
    ("GET", "/api/flist/golden"),
    ("GET", "/api/flist/Administrator"),
    ("GET", "/api/flist/Administrator/tags/stable"),
    ("GET", "/api/flist/golden/v1.flist"),
    ("INFO", "/api/flist/golden/v1.flist"),
    ("GET", "/api/flist/Administrator/app-1.0.flist"),
    ("GET", "/api/flist/Administrator/app-1.0"),
    ("GET", "/api/flist/golden/v1.flist/light"),
    ("GET", "/api/flist/golden/app:latest.flist/light"),
    ("GET", "/api/flist/Administrator/app-latest.flist/light"),
    ("GET", "/api/flist/Administrator/app-tags/taglink"),
    ("GET", "/api/flist/Administrator/app-latest.flist/taglink"),
    ("GET", "/api/flist/golden/v2.flist/metadata"),
    ("GET", "/golden/v1.flist"),
    ("GET", "/golden/app:latest.flist"),
    ("GET", "/golden/v1.flist.md5"),
    ("GET", "/Administrator/tags/stable/app.flist"),
    ("GET", "/api/flist/me"),
    # errors
    ("GET", "/api/flist/nouser"),
    ("GET", "/api/flist/nouser/x.flist"),
    ("GET", "/api/flist/golden/missing.flist/light"),
    ("GET", "/api/flist/golden/missing.flist/metadata"),
    ("GET", "/api/flist/golden/tags/none"),
    ("GET", "/nouser/x.flist"),
    ("GET", "/golden/missing.flist"),
    ("GET", "/golden/missing.flist.md5"),
]

# endpoint -> the aspects in which our answer differs (docs/hub-compat.md says why, one by one)
KNOWN: dict[str, set[str]] = {
    # `.keep` (and any other non-flist file) is listed by the real hub as a regular file
    "GET /api/flist": {"body"},
    "GET /api/fileslist": {"body"},
    "GET /api/flist/golden": {"body"},
    # taglink of a plain link: the real hub only knows tag links (names without .flist)
    "GET /api/flist/Administrator/app-latest.flist/taglink": {"status", "body"},
    "GET /golden/v1.flist.md5": {"content-type"},
    # authentication off makes every real-hub caller "Administrator"; ours always wants a token
    "GET /api/flist/me": {"status", "body"},
    # the real hub's missing-tag 404 is Flask's HTML page; ours answers the JSON error shape
    "GET /api/flist/golden/tags/none": {"content-type", "body"},
}

HEADERS = ("content-type", "content-disposition", "last-modified", "cache-control")


def _body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return response.content


def differences(real: httpx.Response, ours: httpx.Response) -> set[str]:
    found = {h for h in HEADERS if real.headers.get(h) != ours.headers.get(h)}
    if real.status_code != ours.status_code:
        found.add("status")
    if _body(real) != _body(ours):
        found.add("body")
    return found


@pytest.fixture
def shared_storage(tmp_path: Path, real_zdb: ZdbServer) -> Any:
    users = tmp_path / "users"
    make_golden_layout(users)
    (users / ".keep").write_text("")
    (users / "golden" / ".keep").write_text("")
    with running_0hub(tmp_path / "real", real_zdb, public=users) as real:
        src = tmp_path / "src"
        (src / "bin").mkdir(parents=True)
        (src / "bin" / "tool").write_bytes(os.urandom(700_000))
        (src / "README").write_text("hello\n")
        flist = tmp_path / "app-1.0.flist"
        pack = zos_upgrade_cmd("flist", "pack", str(src), "-o", str(flist), "--store", real_zdb.url())
        subprocess.run(pack, check=True, capture_output=True, timeout=120)
        with httpx.Client(base_url=real.base, timeout=60) as client:
            with flist.open("rb") as handle:
                answer = client.post("/api/flist/me/upload-flist", files={"file": ("app-1.0.flist", handle)})
            assert answer.status_code == 200, answer.text
            # the real hub ran `zflist check` on our flist against its 0-db: no block missing
            assert answer.json()["payload"]["files"]["response"]["failure"] == 0
            for path in ("/api/flist/me/app-1.0.flist/link/app-latest",
                         "/api/flist/me/stable/app.flist/tag/Administrator/app-1.0.flist",
                         "/api/flist/me/app-tags/crosstag/Administrator/stable"):
                made = client.get(path)
                assert made.status_code == 200 and made.json()["status"] == "success", (path, made.text)
        ours_work = tmp_path / "ours"
        ours_work.mkdir()
        # the real hub with authentication off lists "Administrator" as its one official repository
        config = 'official = ["Administrator"]\n[tokens]\n"token-of-the-admin-0123456789" = "Administrator"\n'
        with hub_process(users, ours_work, config=config) as ours:
            yield real.base, ours.url


def test_read_endpoints_match_the_real_0hub(shared_storage: tuple[str, str]) -> None:
    real_url, ours_url = shared_storage
    found: dict[str, set[str]] = {}
    report = []
    with httpx.Client(base_url=real_url, timeout=60) as real, \
            httpx.Client(base_url=ours_url, timeout=60) as ours:
        for method, path in READ_ENDPOINTS:
            a, b = real.request(method, path), ours.request(method, path)
            diff = differences(a, b)
            if diff:
                found[f"{method} {path}"] = diff
                report.append(f"{method} {path}: {sorted(diff)}; real {a.status_code} "
                              f"{a.headers.get('content-type')} {a.content[:160]!r}; ours {b.status_code} "
                              f"{b.headers.get('content-type')} {b.content[:160]!r}")
    print("\n".join(report))
    same = len(READ_ENDPOINTS) - len(found)
    print(f"{same} of {len(READ_ENDPOINTS)} read endpoints answer the same")
    assert found == KNOWN, "\n".join(report)
