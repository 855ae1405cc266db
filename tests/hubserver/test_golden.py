"""Our server, given the recorded hub's storage, answers what the real 0-hub answered."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.hub import RECORDED, RECORDED_ROUTES, HubFactory


def test_every_recorded_answer_is_reproduced(start_hub: HubFactory, golden_root: Path) -> None:
    with start_hub(golden_root) as hub, httpx.Client(base_url=hub.url) as http:
        requests = [("GET", path, spec) for path, spec in RECORDED_ROUTES.items()]
        requests.append(
            (
                "INFO",
                "/api/flist/golden/v1.flist",
                ("flist-golden-v1.flist-INFO.json", 200, "application/json"),
            )
        )
        requests += [
            (
                "GET",
                f"/api/flist/golden/{name}.flist/metadata",
                (f"flist-golden-{name}.flist-metadata.json", 200, "application/json"),
            )
            for name in ("v1", "v2")
        ]
        for method, path, (name, status, kind) in requests:
            answer = http.request(method, path)
            expected = (RECORDED / name).read_bytes()
            assert answer.status_code == status, path
            assert answer.headers["content-type"] == kind, path
            assert answer.headers["access-control-allow-origin"] == "*", path
            if name.endswith(".json"):
                # same fields, types and values (json.loads keeps the field order)...
                ours, theirs = answer.json(), json.loads(expected)
                assert ours == theirs, path
                assert json.dumps(ours) == json.dumps(theirs), f"{path}: field order differs"
            # ...and in fact the very same bytes, trailing newline included
            assert answer.content == expected, path


def test_json_shapes_field_by_field(start_hub: HubFactory, golden_root: Path) -> None:
    with start_hub(golden_root) as hub, httpx.Client(base_url=hub.url) as http:
        light = http.get("/api/flist/golden/app:latest.flist/light").json()
        assert list(light) == ["name", "size", "updated", "type", "md5", "linktime", "target"]
        assert isinstance(light["size"], int) and isinstance(light["updated"], int)
        assert light["target"] == "v2.flist" and light["linktime"] == 1700000300
        regular = http.get("/api/flist/golden/v1.flist/light").json()
        assert list(regular) == ["name", "size", "updated", "type", "md5"]
        listing = http.get("/api/flist/golden").json()
        assert [list(item) for item in listing] == [
            ["name", "size", "updated", "linktime", "type", "target"],
            ["name", "size", "updated", "type"],
            ["name", "size", "updated", "type"],
        ]
        assert all(isinstance(item["size"], str) and item["size"].endswith(" KB") for item in listing)
        tree = http.get("/api/flist/golden/v2.flist").json()
        assert list(tree) == ["content", "regular", "symlink", "directory", "special", "failure", "fullsize"]
        assert all(list(item) == ["size", "path"] for item in tree["content"])
        counted = tree["regular"] + tree["symlink"] + tree["directory"] + tree["special"]
        assert counted == len(tree["content"]) and tree["failure"] == 0
        repos = http.get("/api/repositories").json()
        assert repos == [{"name": "golden", "official": False, "updated": 1700000400}]


def test_official_repositories_come_from_the_config(start_hub: HubFactory, golden_root: Path) -> None:
    with start_hub(golden_root, config='official = ["golden"]\n') as hub:
        assert httpx.get(hub.url + "/api/repositories").json()[0]["official"] is True
