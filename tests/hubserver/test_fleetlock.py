"""The hub's FleetLock endpoint, against the real hub process: a persistent, recursive semaphore per
group, the protocol's error bodies, and the node's client against it (and against a bad server)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.hub import HubFactory
from tests.support.procs import free_port, serving
from zos_upgrade.config import parse_config
from zos_upgrade.errors import ConfigError
from zos_upgrade.hubserver.config import load_hub_config
from zos_upgrade.hubserver.fleetlock import STATE_FILE
from zos_upgrade.rollout.fleetlock import FleetLockClient, LockRejected, LockUnavailable

HEADERS = {"fleet-lock-protocol": "true"}
CONFIG = '[fleet_lock]\nslots = 1\ngroups = { workers = 2 }\n'


def body(node: str, group: str = "workers") -> dict[str, object]:
    return {"client_params": {"id": node, "group": group}}


def lock(url: str, node: str, group: str = "workers", endpoint: str = "pre-reboot") -> httpx.Response:
    return httpx.post(f"{url}/v1/{endpoint}", json=body(node, group), headers=HEADERS)


def test_a_group_admits_its_size_recursively_and_survives_a_restart(start_hub: HubFactory,
                                                                     tmp_path: Path) -> None:
    root = tmp_path / "hub"
    with start_hub(root, config=CONFIG) as hub:
        assert lock(hub.url, "a").status_code == 200
        assert lock(hub.url, "b").status_code == 200
        assert lock(hub.url, "a").status_code == 200  # recursive: a holds one slot, not two
        full = lock(hub.url, "c")
        assert full.status_code == 409
        assert full.json()["kind"] == "failed_lock_semaphore_full" and "workers" in full.json()["value"]
        # another group has its own semaphore, of the default size 1
        assert lock(hub.url, "c", "default").status_code == 200
        assert lock(hub.url, "d", "default").status_code == 409
    state = json.loads((root / STATE_FILE).read_text())
    assert state == {"groups": {"workers": ["a", "b"], "default": ["c"]}}
    with start_hub(root, config=CONFIG) as hub:  # restarted: the slots are still held
        assert lock(hub.url, "c").status_code == 409
        assert lock(hub.url, "a", endpoint="steady-state").status_code == 200
        assert lock(hub.url, "a", endpoint="steady-state").status_code == 200  # unlock-if-held: yes again
        assert lock(hub.url, "never-held", endpoint="steady-state").status_code == 200
        assert lock(hub.url, "c").status_code == 200
        # the repositories' routes are untouched, and the state file is no repository
        assert httpx.get(f"{hub.url}/api/repositories").json() == []


@pytest.mark.parametrize(("headers", "content", "kind", "status"), [
    ({}, json.dumps(body("a")), "missing_fleet_lock_header", 400),
    ({"fleet-lock-protocol": "false"}, json.dumps(body("a")), "missing_fleet_lock_header", 400),
    (HEADERS, "not json", "bad_request", 400),
    (HEADERS, json.dumps({"client_params": {"id": "a"}}), "bad_request", 400),
    (HEADERS, json.dumps({"client_params": {"id": 5, "group": "g"}}), "bad_request", 400),
    (HEADERS, json.dumps({"id": "a", "group": "g"}), "bad_request", 400),
    (HEADERS, json.dumps(body("")), "bad_request", 400),
    (HEADERS, json.dumps(body("a b")), "bad_request", 400),
    (HEADERS, json.dumps(body("a", "no/slash")), "bad_request", 400),
    (HEADERS, json.dumps(body("a", "")), "bad_request", 400),
    (HEADERS, "x" * 5000, "bad_request", 413),
])
def test_bad_requests_get_the_protocols_error_body_and_change_nothing(
        start_hub: HubFactory, tmp_path: Path, headers: dict[str, str], content: str, kind: str,
        status: int) -> None:
    root = tmp_path / "hub"
    with start_hub(root, config=CONFIG) as hub:
        for endpoint in ("pre-reboot", "steady-state"):
            answer = httpx.post(f"{hub.url}/v1/{endpoint}", content=content.encode(), headers=headers)
            assert answer.status_code == status
            assert answer.json()["kind"] == kind and answer.json()["value"]
        assert httpx.get(f"{hub.url}/v1/pre-reboot").status_code == 404  # POST only: a GET is a download
    assert not (root / STATE_FILE).exists()


def test_the_node_client_against_the_hub(start_hub: HubFactory) -> None:
    async def run(url: str) -> None:
        a = FleetLockClient(url + "/", "a", "default")
        b = FleetLockClient(url, "b", "default")
        try:
            await a.pre_reboot()
            await a.pre_reboot()
            with pytest.raises(LockRejected) as info:
                await b.pre_reboot()
            assert info.value.status == 409 and info.value.kind == "failed_lock_semaphore_full"
            await a.steady_state()
            await b.pre_reboot()
        finally:
            await a.aclose()
            await b.aclose()

    with start_hub(config=CONFIG) as hub:
        asyncio.run(run(hub.url))


BAD_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        code, body = {"/v1/pre-reboot": (418, b"<html>teapot</html>"), "/v1/steady-state": (204, b"")}.get(
            self.path, (500, b"oops"))
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_bad_answers_and_no_server_are_typed_errors(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text(BAD_SERVER)
    port = free_port()

    async def run() -> None:
        client = FleetLockClient(f"http://127.0.0.1:{port}", "a", "default")
        try:
            with pytest.raises(LockRejected) as info:
                await client.pre_reboot()  # not the protocol's error body: Zincati's generic kind
            assert (info.value.kind, info.value.status) == ("generic_http_418", 418)
            with pytest.raises(LockRejected, match="code 204"):
                await client.steady_state()  # only 200 is a yes
        finally:
            await client.aclose()

    with serving([sys.executable, str(script), str(port)], port):
        asyncio.run(run())

    async def down() -> None:
        client = FleetLockClient(f"http://127.0.0.1:{port}", "a", "default")
        try:
            with pytest.raises(LockUnavailable, match="no answer"):
                await client.pre_reboot()
        finally:
            await client.aclose()

    asyncio.run(down())  # the server is gone: nobody listens on the port


@pytest.mark.parametrize(("text", "message"), [
    ("[fleet_lock]\nslots = 0\n", "slots"),
    ("[fleet_lock]\nslots = true\n", "slots"),
    ("[fleet_lock]\nsize = 2\n", "unknown key"),
    ("[fleet_lock]\ngroups = { workers = -1 }\n", "workers"),
    ('[fleet_lock]\ngroups = { "a/b" = 1 }\n', "not a group name"),
    ("fleet_lock = 3\n", "must be a table"),
])
def test_bad_hub_fleet_lock_config(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_hub_config(path, tmp_path)


def test_node_and_hub_agree_on_group_names() -> None:
    cfg = parse_config('[node]\ngroup = "workers.eu-1"\n[source]\nhub = "http://h"\nflist = "a/b"\n'
                       '[trust]\ninsecure = true\n')
    assert cfg.node.group == "workers.eu-1"
