"""Our hub's TUF routes, over loopback against a real hub process: a real python-tuf Updater trusts
what the CLI signed and the hub serves; every bad upload is refused with a JSON error, nothing stored."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import Updater

from tests.support.hub import TOKEN_A, TOKEN_B, HubFactory
from zos_upgrade.cli import cli
from zos_upgrade.trust.layout import hub_metadata_url, hub_targets_url


def run(*args: str | Path) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def stored(root: Path) -> dict[str, bytes]:
    folder = root / ".tuf" / "alpha" / "metadata"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def updater(hub: str, work: Path, name: str, pinned: Path) -> Updater:
    meta = work / name / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    (work / name / "targets").mkdir(exist_ok=True)
    return Updater(
        metadata_dir=str(meta),
        metadata_base_url=hub_metadata_url(hub, "alpha"),
        target_base_url=hub_targets_url(hub, "alpha"),
        target_dir=str(work / name / "targets"),
        bootstrap=pinned.read_bytes(),
    )


def test_updater_trusts_what_the_cli_signed_and_the_hub_serves(tmp_path: Path, start_hub: HubFactory) -> None:
    repo = tmp_path / "tf"
    build = tmp_path / "build"
    build.mkdir()
    v1, v2 = build / "zos:1.2.0.flist", build / "zos:1.3.0.flist"
    v1.write_bytes(os.urandom(5000))
    v2.write_bytes(os.urandom(7000))
    run("trust", "init", "--dir", repo, "--root-keys", "3", "--root-threshold", "2")
    run("trust", "sign", "--dir", repo, v1, v2)
    run("trust", "link", "--dir", repo, "zos:production.flist", "zos:1.2.0.flist")
    pinned = tmp_path / "pinned.root.json"
    pinned.write_bytes((repo / "metadata" / "1.root.json").read_bytes())
    with start_hub() as hub:
        (hub.root / "alpha").mkdir()
        for f in (v1, v2):
            (hub.root / "alpha" / f.name).write_bytes(f.read_bytes())
        os.symlink("zos:1.2.0.flist", hub.root / "alpha" / "zos:production.flist")
        out = run("trust", "push", "--dir", repo, "--url", hub.url, "--repo", "alpha", "--token", TOKEN_A)
        assert "timestamp.json" in out
        node = updater(hub.url, tmp_path, "node", pinned)
        node.refresh()
        info = node.get_targetinfo("zos:production.flist")
        assert info is not None and info.custom["zos"] == {"kind": "link", "link": "zos:1.2.0.flist"}
        assert Path(node.download_target(info)).read_bytes() == v1.read_bytes()
        assert node.get_targetinfo("zos:9.9.9.flist") is None

        # two root rotations and a moved link while the node is away: it still follows
        run(
            "trust",
            "rotate",
            "--dir",
            repo,
            "root",
            "--add",
            "1",
            "--revoke",
            Metadata.from_file(str(pinned)).signed.roles["root"].keyids[0],
        )
        run(
            "trust",
            "rotate",
            "--dir",
            repo,
            "timestamp",
            "--add",
            "1",
            "--revoke",
            Metadata.from_file(str(pinned)).signed.roles["timestamp"].keyids[0],
        )
        run("trust", "link", "--dir", repo, "zos:production.flist", "zos:1.3.0.flist")
        os.unlink(hub.root / "alpha" / "zos:production.flist")
        os.symlink("zos:1.3.0.flist", hub.root / "alpha" / "zos:production.flist")
        out = run("trust", "push", "--dir", repo, "--url", hub.url, "--repo", "alpha", "--token", TOKEN_A)
        assert "2.root.json" in out and "3.root.json" in out
        node = updater(hub.url, tmp_path, "node", pinned)
        node.refresh()
        assert node._trusted_set.root.version == 3
        info = node.get_targetinfo("zos:production.flist")
        assert info is not None
        assert Path(node.download_target(info)).read_bytes() == v2.read_bytes()

        status = json.loads(run("trust", "status", "--dir", repo, "--json"))
        assert [r["version"] for r in status["roles"]] == [3, 4, 6, 6]
        assert status["targets"]["zos:production.flist"] == {"kind": "link", "link": "zos:1.3.0.flist"}

        # the hub serves a target only under the sha256 it has: a file swapped under a name is a 404
        (hub.root / "alpha" / "zos:1.3.0.flist").write_bytes(b"forged")
        digest = info.hashes["sha256"]
        answer = httpx.get(f"{hub.url}/tuf/alpha/targets/{digest}.zos:production.flist")
        assert answer.status_code == 404 and "sha256" in answer.json()["message"]


def test_metadata_get_is_conditional_and_tuf_is_not_a_repository(
    tmp_path: Path, start_hub: HubFactory
) -> None:
    repo = tmp_path / "tf"
    run("trust", "init", "--dir", repo)
    with start_hub() as hub:
        (hub.root / "alpha").mkdir()
        assert httpx.get(f"{hub.url}/tuf/alpha/metadata/timestamp.json").status_code == 404
        run("trust", "push", "--dir", repo, "--url", hub.url, "--repo", "alpha", "--token", TOKEN_A)
        url = f"{hub.url}/tuf/alpha/metadata/timestamp.json"
        first = httpx.get(url)
        assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
        assert first.content == (repo / "metadata" / "timestamp.json").read_bytes()
        again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        old = time.time() - 60
        os.utime(hub.root / ".tuf" / "alpha" / "metadata" / "timestamp.json", (old, old))
        dated = httpx.get(url)
        assert "last-modified" in dated.headers
        since = httpx.get(url, headers={"If-Modified-Since": dated.headers["last-modified"]})
        assert since.status_code == 304
        assert httpx.get(f"{hub.url}/tuf/alpha/metadata/keys.json").status_code == 404
        names = [r["name"] for r in httpx.get(f"{hub.url}/api/repositories").json()]
        assert names == ["alpha"]
        assert httpx.get(f"{hub.url}/.tuf/alpha").status_code in (400, 404)
        assert all(".tuf" not in item for item in httpx.get(f"{hub.url}/api/flist").json())


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_bytes())
    return doc


def test_bad_uploads_refused_nothing_stored(tmp_path: Path, start_hub: HubFactory) -> None:
    repo = tmp_path / "tf"
    run("trust", "init", "--dir", repo, "--root-keys", "2", "--root-threshold", "2")
    meta = repo / "metadata"
    other = tmp_path / "other"
    run("trust", "init", "--dir", other)
    with start_hub() as hub:
        run("trust", "push", "--dir", repo, "--url", hub.url, "--repo", "alpha", "--token", TOKEN_A)
        before = stored(hub.root)
        base = f"{hub.url}/tuf/alpha/metadata/"
        ok_ts = (meta / "timestamp.json").read_bytes()

        def put(name: str, body: bytes, token: str | None = TOKEN_A) -> httpx.Response:
            headers = {"Authorization": f"bearer {token}"} if token else {}
            return httpx.put(base + name, content=body, headers=headers)

        cases: list[tuple[str, httpx.Response, int, str]] = [
            ("no token", put("timestamp.json", ok_ts, None), 401, "authorization"),
            ("wrong token", put("timestamp.json", ok_ts, "x" * 30), 401, "invalid token"),
            ("other repo's token", put("timestamp.json", ok_ts, TOKEN_B), 403, "alpha"),
            ("bad JSON", put("timestamp.json", b"{not json"), 400, "not valid TUF metadata"),
            (
                "wrong role",
                put("timestamp.json", (meta / "1.snapshot.json").read_bytes()),
                400,
                "expected 'timestamp'",
            ),
            ("unknown file", put("evil.json", ok_ts), 404, "not one of"),
            ("root.json", put("root.json", (meta / "1.root.json").read_bytes()), 400, "N.root.json"),
            ("same version", put("timestamp.json", ok_ts), 409, "does not follow"),
            ("oversize", put("timestamp.json", b" " * (9 * 1024 * 1024)), 413, "over"),
            (
                "name/version",
                put("2.snapshot.json", (meta / "1.snapshot.json").read_bytes()),
                400,
                "holds version 1",
            ),
        ]
        # a root 2 signed only by another repository's keys: not the previous threshold
        foreign = Metadata.from_bytes((other / "metadata" / "1.root.json").read_bytes())
        foreign.signed.version = 2
        cases.append(
            ("foreign root", put("2.root.json", foreign.to_bytes(JSONSerializer())), 400, "previous root")
        )
        # a timestamp signed by the other repository's key
        ts = Metadata.from_bytes((other / "metadata" / "timestamp.json").read_bytes())
        ts.signed.version = 9
        cases.append(
            ("foreign timestamp", put("timestamp.json", ts.to_bytes(JSONSerializer())), 400, "threshold")
        )
        # a hand-edited timestamp (version bumped, signature left): the signature no longer holds
        edited = _doc(meta / "timestamp.json")
        edited["signed"]["version"] = 5
        cases.append(("edited", put("timestamp.json", json.dumps(edited).encode()), 400, "threshold"))
        for what, answer, status, text in cases:
            assert answer.status_code == status, (what, answer.text)
            body = answer.json()
            assert body["status"] == "error" and text in body["message"], (what, body)
        assert stored(hub.root) == before
        # and a good next timestamp is accepted
        run("trust", "timestamp", "--dir", repo)
        assert put("timestamp.json", (meta / "timestamp.json").read_bytes()).status_code == 200
        assert stored(hub.root)["timestamp.json"] == (meta / "timestamp.json").read_bytes()
