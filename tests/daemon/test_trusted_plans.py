"""Issue 20 item 3: a phased rollout plan signed in the TUF targets metadata (``trust sign|link
--rollout``), validated before anything is signed, and read back by the node only through a real
ngclient refresh against our hub on loopback (``daemon/plans.py`` behind the RolloutGate)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.support.hub import TOKEN_A, Hub, HubFactory, start_hub
from zos_upgrade.cli import cli
from zos_upgrade.daemon.plans import TrustedPlans, flist_version, release_version
from zos_upgrade.daemon.strategy import RolloutGate
from zos_upgrade.rollout import RolloutError, bucket, parse_plan
from zos_upgrade.trust.client import TrustedRepo
from zos_upgrade.trust.errors import ForgedMetadata, TrustError
from zos_upgrade.trust.fetcher import HttpxFetcher
from zos_upgrade.trust.keys import KeyStore
from zos_upgrade.trust.layout import hub_metadata_url, hub_targets_url, read_custom
from zos_upgrade.trust.repository import TrustRepository

__all__ = ["start_hub"]  # the fixture, re-exported for pytest

LINK = "zos:production.flist"
RAMP = {"start": "2026-12-05T08:00:00Z", "duration": 86400, "failure_threshold": 2}
STEPS = {"start": "2026-12-05T08:00:00Z",
         "steps": [{"offset": 0, "percent": 1}, {"offset": 3600, "percent": 50}]}


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def run(*args: str | Path) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def plan_file(folder: Path, name: str, doc: Any) -> Path:
    path = folder / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def metadata(repo: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((repo / "metadata").iterdir())}


class Signed:
    """A TUF repository signed with the real CLI, pushed to a real hub, and a node's TrustedRepo."""

    def __init__(self, tmp: Path, hub: Hub) -> None:
        self.tmp, self.hub = tmp, hub
        self.repo = tmp / "tf"
        self.build = tmp / "build"
        self.build.mkdir()
        run("trust", "init", "--dir", self.repo)
        (hub.root / "alpha").mkdir()
        self.fetcher = HttpxFetcher()
        self.node = TrustedRepo(tmp / "node" / "alpha", hub_metadata_url(hub.url, "alpha"),
                                hub_targets_url(hub.url, "alpha"), self.repo / "metadata" / "1.root.json",
                                self.fetcher, name="alpha")
        self.plans = TrustedPlans(self.node, link=LINK, version_of=flist_version)

    def flist(self, version: str) -> Path:
        file = self.build / f"zos:{version}.flist"
        file.write_bytes(os.urandom(3000))
        (self.hub.root / "alpha" / file.name).write_bytes(file.read_bytes())
        return file

    def push(self) -> None:
        run("trust", "push", "--dir", self.repo, "--url", self.hub.url, "--repo", "alpha", "--token", TOKEN_A)

    def refreshed(self) -> TrustedPlans:
        self.push()
        self.node.refresh()
        return self.plans


@pytest.fixture
def signed(tmp_path: Path, start_hub: HubFactory) -> Iterator[Signed]:
    with start_hub() as hub:
        s = Signed(tmp_path, hub)
        try:
            yield s
        finally:
            s.fetcher.close()


def test_plans_signed_on_releases_and_link_moves_are_read_back_through_ngclient(signed: Signed) -> None:
    ramp, steps = plan_file(signed.tmp, "ramp.json", RAMP), plan_file(signed.tmp, "steps.json", STEPS)
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.2.0"), "--rollout", ramp)
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.3.0"))
    run("trust", "link", "--dir", signed.repo, LINK, "zos:1.2.0.flist")
    plans = signed.refreshed()
    # the release's own plan (the link move carries none), none for a release signed without one
    assert plans("1.2.0") == parse_plan(RAMP)
    assert plans("1.3.0") is None and plans("9.9.9") is None

    # a link move with a plan of its own: it wins for the version the link names
    run("trust", "link", "--dir", signed.repo, LINK, "zos:1.3.0.flist", "--rollout", steps)
    plans = signed.refreshed()
    assert plans("1.3.0") == parse_plan(STEPS) and plans("1.2.0") == parse_plan(RAMP)
    status = json.loads(run("trust", "status", "--dir", signed.repo, "--json"))["targets"]
    assert status[LINK] == {"kind": "link", "link": "zos:1.3.0.flist", "rollout": STEPS}
    assert status["zos:1.2.0.flist"]["rollout"] == RAMP and "rollout" not in status["zos:1.3.0.flist"]

    # re-signing a file keeps its plan and the link's; the link's plan moves with the same link only
    (signed.hub.root / "alpha" / "zos:1.3.0.flist").unlink()
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.3.0"))
    assert signed.refreshed()("1.3.0") == parse_plan(STEPS)
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.2.0"))
    run("trust", "link", "--dir", signed.repo, LINK, "zos:1.2.0.flist")  # a move without a plan
    plans = signed.refreshed()
    assert plans("1.2.0") == parse_plan(RAMP)  # the release's own plan again
    assert plans("1.3.0") is None

    # --no-rollout clears a release's plan
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.2.0"), "--no-rollout")
    assert signed.refreshed()("1.2.0") is None


BAD_PLANS: list[tuple[str, Any, str]] = [
    ("not-json", "{start:", "not JSON"),
    ("both", {**RAMP, "steps": [{"offset": 0, "percent": 5}]}, "exactly one"),
    ("neither", {"start": "2026-12-05T08:00:00Z"}, "exactly one"),
    ("no-zone", {"start": "2026-12-05T08:00:00", "duration": 60}, "start"),
    ("shrinking", {"start": "2026-12-05T08:00:00Z",
                   "steps": [{"offset": 0, "percent": 50}, {"offset": 60, "percent": 10}]}, "never shrinks"),
    ("over-100", {"start": "2026-12-05T08:00:00Z", "steps": [{"offset": 0, "percent": 150}]}, "percent"),
    ("unknown-field", {**RAMP, "speed": "fast"}, "speed"),
    ("not-an-object", [RAMP], "object"),
    ("fractional", {"start": "2026-12-05T08:00:00Z", "steps": [{"offset": 0, "percent": 2.5}]},
     "whole numbers"),
]


@pytest.mark.parametrize(("name", "doc", "says"), BAD_PLANS, ids=[b[0] for b in BAD_PLANS])
def test_a_bad_plan_is_refused_before_anything_is_signed(tmp_path: Path, name: str, doc: Any,
                                                          says: str) -> None:
    repo = tmp_path / "tf"
    run("trust", "init", "--dir", repo)
    release = tmp_path / "zos:1.0.0.flist"
    release.write_bytes(b"release")
    run("trust", "sign", "--dir", repo, release)
    before = metadata(repo)
    bad = plan_file(tmp_path, f"{name}.json", doc)
    for args in (("sign", "--dir", repo, release, "--rollout", bad),
                 ("link", "--dir", repo, LINK, release.name, "--rollout", bad)):
        result = invoke("trust", *args)
        assert result.exit_code == 1, result.output
        assert "RolloutError" in result.output and says in result.output, result.output
        assert metadata(repo) == before, "a refused plan wrote metadata"


def test_plan_options_misused_are_usage_errors_and_a_missing_file_writes_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "tf"
    run("trust", "init", "--dir", repo)
    release = tmp_path / "zos:1.0.0.flist"
    release.write_bytes(b"release")
    good = plan_file(tmp_path, "good.json", RAMP)
    before = metadata(repo)
    assert invoke("trust", "sign", "--dir", repo, release, "--rollout", good, "--no-rollout").exit_code == 2
    assert invoke("trust", "sign", "--dir", repo, "--renew", "targets", "--rollout", good).exit_code == 2
    result = invoke("trust", "sign", "--dir", repo, release, "--rollout", tmp_path / "missing.json")
    assert result.exit_code == 1 and "no such file" in result.output
    huge = plan_file(tmp_path, "huge.json", " " * (65 * 1024) + json.dumps(RAMP))
    result = invoke("trust", "sign", "--dir", repo, release, "--rollout", huge)
    assert result.exit_code == 1 and "larger than" in result.output
    assert metadata(repo) == before


def test_the_trust_layer_refuses_a_rollout_field_that_is_not_an_object() -> None:
    for value in ([1, 2], "fast", 100):
        with pytest.raises(TrustError, match="expected a JSON object"):
            read_custom({"zos": {"kind": "flist", "md5": "0" * 32, "rollout": value}}, "zos:1.0.0.flist")
    with pytest.raises(TrustError, match="canonical JSON"):  # what an API caller could hand the repository
        read_custom({"zos": {"kind": "flist", "md5": "0" * 32, "rollout": {"duration": 0.5}}}, "f")
    with pytest.raises(TrustError, match="at most"):
        read_custom({"zos": {"kind": "flist", "md5": "0" * 32, "rollout": {"x": "y" * 20_000}}}, "f")


def test_an_invalid_plan_in_validly_signed_metadata_does_not_start_the_release(signed: Signed) -> None:
    # a repository written through the API (no CLI validation): validly signed, invalid plan
    signed.flist("2.0.0")
    repo = TrustRepository(signed.repo / "metadata", KeyStore(signed.repo / "keys"))
    repo.sign_flists([("zos:2.0.0.flist", signed.build / "zos:2.0.0.flist")],
                     rollout={"start": "2026-12-05T08:00:00Z", "duration": -5})
    repo.link(LINK, "zos:2.0.0.flist")
    plans = signed.refreshed()
    with pytest.raises(RolloutError, match=r"signed rollout plan of 'zos:2\.0\.0\.flist'"):
        plans("2.0.0")
    gate = RolloutGate("node-1", plans, clock=lambda: 4e9)
    outcome = gate.blocked("boot 2.0.0", to_version="2.0.0", at=1.0, version="1.0.0")
    assert outcome is not None and outcome.result == "failed" and not outcome.applied
    assert "not started: its rollout plan is invalid" in outcome.detail and "duration" in outcome.detail


def test_the_gate_waits_for_the_bucket_with_the_signed_plan(signed: Signed) -> None:
    ramp = plan_file(signed.tmp, "ramp.json", {"start": "2026-12-05T08:00:00Z", "duration": 10_000})
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.2.0"))
    run("trust", "link", "--dir", signed.repo, LINK, "zos:1.2.0.flist", "--rollout", ramp)
    plans = signed.refreshed()
    start = parse_plan(RAMP).start_ts
    opens = start + 10_000 * bucket("node-1", "1.2.0") / 100
    now = [opens - 1]
    gate = RolloutGate("node-1", plans, clock=lambda: now[0])
    waiting = gate.blocked("boot 1.2.0", to_version="1.2.0", at=1.0, version="1.0.0")
    assert waiting is not None and waiting.result == "waiting" and "phased rollout at" in waiting.detail
    now[0] = opens + 1
    assert gate.blocked("boot 1.2.0", to_version="1.2.0", at=1.0, version="1.0.0") is None


def test_a_plan_rewritten_on_the_hub_is_refused_by_ngclient(signed: Signed) -> None:
    ramp = plan_file(signed.tmp, "ramp.json", RAMP)
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.2.0"), "--rollout", ramp)
    run("trust", "link", "--dir", signed.repo, LINK, "zos:1.2.0.flist")
    signed.push()
    # whoever holds the hub's storage speeds the rollout up: 100 % from the start
    served = signed.hub.root / ".tuf" / "alpha" / "metadata"
    latest = max(served.glob("*.targets.json"), key=lambda p: int(p.name.split(".")[0]))
    doc = json.loads(latest.read_text())
    doc["signed"]["targets"]["zos:1.2.0.flist"]["custom"]["zos"]["rollout"] = {
        "start": "2026-01-01T00:00:00Z", "duration": 0}
    latest.write_text(json.dumps(doc))
    with pytest.raises(ForgedMetadata, match="forged metadata"):
        signed.node.refresh()
    with pytest.raises(TrustError, match="refresh"):  # no verified metadata: no plan read at all
        signed.plans("1.2.0")
    # and a gate asked anyway does not start the release (nor calls the plan invalid)
    outcome = RolloutGate("node-1", signed.plans).blocked("boot 1.2.0", to_version="1.2.0", at=1.0,
                                                          version="1.0.0")
    assert outcome is not None and outcome.result == "failed"
    assert "not started: its rollout plan cannot be read" in outcome.detail


def test_publisher_mode_plans_on_releases_and_latest(signed: Signed) -> None:
    """A release tree's repository (targets named by version, ``latest`` following the highest)."""
    ramp = plan_file(signed.tmp, "ramp.json", RAMP)
    url = "https://cdn.example/zos-{}.flist"
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.0.0"), "--release", "1.0.0",
        "--flist-url", url.format("1.0.0"), "--rollout", ramp)
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.1.0"), "--release", "1.1.0",
        "--flist-url", url.format("1.1.0"))
    plans = TrustedPlans(signed.node, link="latest", version_of=release_version)
    signed.refreshed()
    assert plans("1.0.0") == parse_plan(RAMP) and plans("1.1.0") is None
    # a plan on the `latest` move; it stays while latest names the same release, a move drops it
    steps = plan_file(signed.tmp, "steps.json", STEPS)
    run("trust", "link", "--dir", signed.repo, "latest", "1.1.0", "--rollout", steps)
    signed.refreshed()
    assert plans("1.1.0") == parse_plan(STEPS)
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.0.0"), "--release", "1.0.0",
        "--flist-url", url.format("1.0.0"))  # re-signed: latest still names 1.1.0, both plans kept
    signed.refreshed()
    assert plans("1.1.0") == parse_plan(STEPS) and plans("1.0.0") == parse_plan(RAMP)
    run("trust", "sign", "--dir", signed.repo, signed.flist("1.2.0"), "--release", "1.2.0",
        "--flist-url", url.format("1.2.0"))  # latest moves to 1.2.0: the move's plan does not follow
    signed.refreshed()
    assert plans("1.2.0") is None and plans("1.1.0") is None
    assert json.loads(run("trust", "status", "--dir", signed.repo, "--json"))["targets"]["latest"] == {
        "kind": "link", "link": "1.2.0"}
