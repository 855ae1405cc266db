"""Fleet feedback on a real hub process: node reports, strict validation, the automatic halt, halt
and resume by hand, the record surviving a restart, and the `hub rollout` commands."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.hub import NODE_SECRET as SECRET
from tests.support.hub import TOKEN_A, TOKEN_B, HubFactory, make_golden_layout
from tests.support.hub import rollout_config as config
from tests.support.procs import zos_upgrade_cmd
from zos_upgrade.hub import HubClient, WriteRefused
from zos_upgrade.hub.rollout import Report, node_token
from zos_upgrade.net import Backoff, RetryPolicy

FAST = RetryPolicy(attempts=1, backoff=Backoff(base=0.01, cap=0.01), deadline=10.0)
RELEASE = "golden/v2.flist"
URL = "/api/rollout/golden/v2.flist"


def report(node: str, result: str = "upgraded", reason: str = "", **extra: object) -> dict[str, object]:
    return {"node_id": node, "version": "2.0.0", "version_before": "1.0.0",
            "version_after": "2.0.0" if result == "upgraded" else "1.0.0", "result": result,
            "group": "g1", "reason": reason, "durations": {"total": 12.5}, **extra}


def post(client: httpx.Client, body: object, node: str | None = None, *, raw: bytes | None = None,
         token: str | None = None) -> httpx.Response:
    who = node if node is not None else (body["node_id"] if isinstance(body, dict) else "x")
    headers = {"Authorization": f"bearer {token or node_token(SECRET, str(who))}"}
    content = raw if raw is not None else json.dumps(body).encode()
    return client.post(URL + "/report", content=content, headers=headers)


def counts(client: httpx.Client) -> dict[str, int]:
    reply = client.get(URL)
    assert reply.status_code == 200, reply.text
    result: dict[str, int] = reply.json()["counts"]
    return result


def test_reports_are_counted_by_each_node_latest(start_hub: HubFactory, tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "hub")
    with start_hub(root, config=config(threshold=50)) as hub, httpx.Client(base_url=hub.url) as c:
        assert post(c, report("n1")).status_code == 200
        assert post(c, report("n2", "failed", "hook migrate exited 3")).status_code == 200
        assert post(c, report("n3", "waiting")).status_code == 200
        assert counts(c) == {"waiting": 1, "upgraded": 1, "failed": 1, "rolled-back": 0}
        # n2 retried and succeeded, n3 started and rolled back: each node counts once, by its latest
        post(c, report("n2"))
        post(c, report("n3", "rolled-back", "service web did not come up"))
        status = c.get(URL).json()
        assert status["counts"] == {"waiting": 0, "upgraded": 2, "failed": 0, "rolled-back": 1}
        assert status["reasons"] == [{"reason": "service web did not come up", "nodes": 1}]
        assert status["history"][-1][1:] == [0, 2, 0, 1]
        assert status["halted"] is False
        # the record is not a repository, nor visible in any listing
        assert [r["name"] for r in c.get("/api/repositories").json()] == ["golden"]


@pytest.mark.parametrize(("body", "why"), [
    ({**report("n1"), "extra": 1}, "unknown field"),
    ({**report("n1"), "result": "exploded"}, "result"),
    ({**report("n1"), "version": 2}, "Expected `str`"),
    ({**report("n1"), "reason": "x" * 1025}, "reason"),
    ({**report("n1"), "durations": {"total": -1}}, "durations"),
    ({**report("n1"), "durations": {f"d{'x' * i}": 1 for i in range(9)}}, "durations"),
    ({**report("n1"), "version_before": "1.0 <b>"}, "version_before"),
    ({**report("n1"), "group": "a group"}, "group"),
    ([1, 2], "Expected `object`"),
])
def test_bad_reports_are_refused_and_change_nothing(start_hub: HubFactory, tmp_path: Path,
                                                    body: object, why: str) -> None:
    root = make_golden_layout(tmp_path / "hub")
    with start_hub(root, config=config()) as hub, httpx.Client(base_url=hub.url) as c:
        reply = post(c, body, node="n1")
        assert reply.status_code == 400, reply.text
        assert why in reply.json()["message"]
        assert counts(c) == {"waiting": 0, "upgraded": 0, "failed": 0, "rolled-back": 0}


def test_refusals_by_size_token_name_and_release(start_hub: HubFactory, tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "hub")
    with start_hub(root, config=config(max_nodes=2)) as hub, httpx.Client(base_url=hub.url) as c:
        assert post(c, None, node="n1", raw=b"{not json").status_code == 400
        big = post(c, report("n1", reason="x"), raw=b" " * 5000 + json.dumps(report("n1")).encode())
        assert big.status_code == 413
        bad_id = post(c, report("n1; rm -rf /"), node="n1")
        assert bad_id.status_code == 400 and "node_id" in bad_id.json()["message"]
        # a token is bound to its node: n2's token does not let it report as n1
        assert post(c, report("n1"), token=node_token(SECRET, "n2")).status_code == 401
        assert post(c, report("n1"), token=node_token("another-secret-000000", "n1")).status_code == 401
        no_auth = c.post(URL + "/report", content=json.dumps(report("n1")))
        assert no_auth.status_code == 401
        # a release the hub does not store gets no record
        missing = c.post("/api/rollout/golden/nope.flist/report", content=json.dumps(report("n1")),
                         headers={"Authorization": f"bearer {node_token(SECRET, 'n1')}"})
        assert missing.status_code == 404
        hidden = c.post("/api/rollout/golden/.rollout/report", content=json.dumps(report("n1")),
                        headers={"Authorization": f"bearer {node_token(SECRET, 'n1')}"})
        assert hidden.status_code in (400, 404)
        assert counts(c) == {"waiting": 0, "upgraded": 0, "failed": 0, "rolled-back": 0}
        # bounded: a third node is refused, the two known ones still update
        assert post(c, report("n1")).status_code == 200
        assert post(c, report("n2")).status_code == 200
        full = post(c, report("n3"))
        assert full.status_code == 507 and "2 nodes" in full.json()["message"]
        assert post(c, report("n2", "failed")).status_code == 200
        assert counts(c) == {"waiting": 0, "upgraded": 1, "failed": 1, "rolled-back": 0}


def test_a_hub_without_node_secret_accepts_no_report(start_hub: HubFactory, tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "hub")
    with start_hub(root, config=f'[tokens]\n"{TOKEN_A}" = "golden"\n') as hub, \
            httpx.Client(base_url=hub.url) as c:
        reply = post(c, report("n1"))
        assert reply.status_code == 403 and "node_secret" in reply.json()["message"]


def test_failures_past_the_threshold_halt_and_people_resume(start_hub: HubFactory, tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "hub")
    # 10 % with a sample of 5: 1 failure in 4 attempts is below the sample, 1 in 5 (20 %) halts
    with start_hub(root, config=config(threshold=10, min_reports=5)) as hub, \
            httpx.Client(base_url=hub.url) as c:
        post(c, report("n0", "failed", "<script>alert(1)</script>"))
        for n in range(1, 4):
            post(c, report(f"n{n}"))
        assert c.get(URL + "/halt").json() == {"halted": False, "reason": ""}
        reply = post(c, report("n4"))
        assert reply.json()["payload"] == {"halted": True}
        flag = c.get(URL + "/halt").json()
        assert flag["halted"] is True and "1 of 5 nodes failed" in flag["reason"]
        assert c.get(URL).json()["halt"]["by"] == "auto"

        async def people() -> None:
            owner = HubClient(hub.url, token=TOKEN_A, retry=FAST)
            other = HubClient(hub.url, token=TOKEN_B, retry=FAST)
            nobody = HubClient(hub.url, retry=FAST)
            async with owner, other, nobody:
                with pytest.raises(WriteRefused) as refused:
                    await other.resume(RELEASE)
                assert refused.value.status == 403
                with pytest.raises(WriteRefused):
                    await nobody.resume(RELEASE)
                assert (await owner.halt_flag(RELEASE)).halted
                await owner.resume(RELEASE)
                assert not (await owner.halt_flag(RELEASE)).halted
                # the same failures do not halt it again; a new one past the threshold does
                for n in range(5, 8):
                    await HubClient(hub.url, token=node_token(SECRET, f"n{n}"), retry=FAST).report(
                        RELEASE, Report(node_id=f"n{n}", version="2.0.0", version_before="1.0.0",
                                        version_after="2.0.0", result="upgraded"))
                assert not (await owner.halt_flag(RELEASE)).halted
                node8 = HubClient(hub.url, token=node_token(SECRET, "n8"), retry=FAST)
                async with node8:
                    halted = await node8.report(RELEASE, Report(
                        node_id="n8", version="2.0.0", version_before="1.0.0", version_after="1.0.0",
                        result="rolled-back", reason="probation failed"))
                assert halted
                await owner.resume(RELEASE)
                await owner.halt(RELEASE, "bad kernel on the Dell boxes")
                status = await owner.rollout_status(RELEASE)
                assert status.halted and status.halt is not None
                assert (status.halt.by, status.halt.reason) == ("golden", "bad kernel on the Dell boxes")

        asyncio.run(people())
        bad = c.post(URL + "/halt", content=b'{"reason": 3}', headers={"Authorization": f"bearer {TOKEN_A}"})
        assert bad.status_code == 400
        assert c.get(URL).json()["halt"]["reason"] == "bad kernel on the Dell boxes"


def test_the_record_survives_a_restart_and_the_cli_prints_it(start_hub: HubFactory, tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "hub")
    with start_hub(root, config=config(threshold=90)) as hub, httpx.Client(base_url=hub.url) as c:
        post(c, report("n1"))
        post(c, report("n2", "failed", "no space left on /"))
        post(c, report("n3", "failed", "no space left on /"))
    record_files = list((root / ".rollout").rglob("*.json"))
    assert [p.relative_to(root).as_posix() for p in record_files] == [".rollout/golden/v2.flist.json"]
    with start_hub(root, config=config(threshold=90)) as hub:
        human = subprocess.run(zos_upgrade_cmd("hub", "rollout", "status", RELEASE, "--url", hub.url),
                               capture_output=True, text=True, check=True).stdout
        assert "golden/v2.flist: rolling out" in human
        assert "upgraded:          1" in human and "failed:            2" in human
        assert "      2  no space left on /" in human
        out = subprocess.run(zos_upgrade_cmd("hub", "rollout", "status", RELEASE, "--url", hub.url, "--json"),
                             capture_output=True, text=True, check=True).stdout
        doc = json.loads(out)
        assert doc["counts"] == {"waiting": 0, "upgraded": 1, "failed": 2, "rolled-back": 0}
        halted = subprocess.run(zos_upgrade_cmd("hub", "rollout", "halt", RELEASE, "--url", hub.url,
                                                "--token", TOKEN_A, "--reason", "by hand"),
                                capture_output=True, text=True)
        assert halted.returncode == 0 and "halted" in halted.stdout
        refused = subprocess.run(zos_upgrade_cmd("hub", "rollout", "resume", RELEASE, "--url", hub.url,
                                                 "--token", TOKEN_B), capture_output=True, text=True)
        assert refused.returncode == 1 and "403" in refused.stderr
        human = subprocess.run(zos_upgrade_cmd("hub", "rollout", "status", RELEASE, "--url", hub.url),
                               capture_output=True, text=True, check=True).stdout
        assert "HALTED" in human and "by golden: by hand" in human


def test_node_token_command(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(config())
    out = subprocess.run(zos_upgrade_cmd("hub", "node-token", "node-7", "--config", str(cfg)),
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == node_token(SECRET, "node-7") and out.startswith("zn1.")
    bad = subprocess.run(zos_upgrade_cmd("hub", "node-token", "../x", "--config", str(cfg)),
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "node id" in bad.stderr


def test_the_plan_threshold_wins_over_the_hub_default(start_hub: HubFactory, tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "hub")
    plan = tmp_path / "plan.json"
    plan.write_text('{"start": "2026-12-05T08:00:00Z", "duration": 600, "failure_threshold": 50}')
    with start_hub(root, config=config(threshold=10, min_reports=5)) as hub, \
            httpx.Client(base_url=hub.url) as c:
        cmd = ("hub", "rollout", "plan", RELEASE, str(plan), "--url", hub.url)
        refused = subprocess.run(zos_upgrade_cmd(*cmd, "--token", TOKEN_B), capture_output=True, text=True)
        assert refused.returncode == 1 and "403" in refused.stderr
        done = subprocess.run(zos_upgrade_cmd(*cmd, "--token", TOKEN_A), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "failure threshold 50 %" in done.stdout
        bad = c.put(URL + "/plan", content=b'{"start": "2026-12-05T08:00:00Z"}',
                    headers={"Authorization": f"bearer {TOKEN_A}"})
        assert bad.status_code == 400 and "duration" in bad.json()["message"]
        assert c.get(URL).json()["plan"]["failure_threshold"] == 50
        # 2 failures of 5 (40 %) would halt at the hub's 10 %, not at the plan's 50 %
        for n in range(5):
            post(c, report(f"n{n}", "failed" if n < 2 else "upgraded"))
        assert c.get(URL + "/halt").json()["halted"] is False
        post(c, report("n5", "failed"))
        post(c, report("n6", "failed"))
        assert c.get(URL + "/halt").json()["halted"] is True  # 4 of 7: 57 %
