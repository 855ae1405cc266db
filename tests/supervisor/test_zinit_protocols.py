"""zinit protocol handling: auto-detection, connection reuse, concurrent JSON-RPC calls."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.supervisor.fake_peer import FakePeer, fake_peer
from tests.support.zinit_emulator import running_zinit
from zos_upgrade.errors import ConfigError
from zos_upgrade.supervisor import ServiceConfig, StateFamily, UnknownService, parse_service_config
from zos_upgrade.supervisor.zinit import ZinitClient


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zu-root-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("server", ["line", "jsonrpc"])
def test_auto_detects_the_protocol_once(server: str, root: Path) -> None:
    async def body(sock: Path) -> None:
        client = ZinitClient(sock, "auto", root=root, timeout=5)
        assert client.protocol == "auto"
        assert await client.list() == {}
        assert client.protocol == server
        await client.install_config("svc", ServiceConfig(exec="sleep 600"))
        await client.monitor("svc")
        assert (await client.status("svc")).target == "up"
        await client.stop("svc")
        await client.aclose()

    with running_zinit(root, server) as sock:
        asyncio.run(body(sock))


def rpc_responder(conn: socket.socket, peer: FakePeer) -> None:
    """A JSON-RPC peer answering every request of a connection with an empty service list."""
    buf = bytes(peer.received)
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            conn.sendall(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": {}}).encode() + b"\n")
        data = conn.recv(65536)
        if not data:
            return
        peer.received += data
        buf += data


def line_responder(conn: socket.socket, peer: FakePeer) -> None:
    conn.sendall(b'{"state": "ok", "body": {}}')


@pytest.mark.parametrize(("protocol", "connections"), [("jsonrpc", 1), ("line", 3)])
def test_jsonrpc_keeps_one_connection_line_uses_one_per_command(protocol: str, connections: int) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="zu-p-", dir="/tmp"))

    async def body() -> None:
        client = ZinitClient(sock_dir / "s.sock", protocol, timeout=5)  # type: ignore[arg-type]
        for _ in range(3):
            assert await client.list() == {}
        await client.aclose()

    responder = rpc_responder if protocol == "jsonrpc" else line_responder
    try:
        with fake_peer(sock_dir / "s.sock", responder) as peer:
            asyncio.run(body())
        assert peer.connections == connections
        if protocol == "jsonrpc":
            ids = [json.loads(x)["id"] for x in bytes(peer.received).splitlines()]
            assert ids == [1, 2, 3]  # request ids count up on the one connection
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_concurrent_jsonrpc_calls_get_their_own_replies(root: Path) -> None:
    names = [f"svc{i}" for i in range(6)]

    async def body(sock: Path) -> None:
        client = ZinitClient(sock, "jsonrpc", root=root, timeout=5)
        for name in names:
            await client.install_config(name, ServiceConfig(exec="sleep 600"))
            await client.monitor(name)
        statuses = await asyncio.gather(*(client.status(n) for n in names * 3))
        assert [s.name for s in statuses] == names * 3
        assert all(s.family in (StateFamily.RUNNING, StateFamily.STARTING) for s in statuses)
        for name in names:
            await client.stop(name)
        await client.aclose()

    with running_zinit(root, "jsonrpc") as sock:
        asyncio.run(body(sock))


def test_config_files_live_under_the_node_root(root: Path) -> None:
    cfg = ServiceConfig(exec="sleep 5", after=("net",), env={"A": "b"}, oneshot=True)

    async def body() -> None:
        client = ZinitClient(root / "no.sock", "line", root=root)
        await client.install_config("svc", cfg)
        path = root / "etc" / "zinit" / "svc.yaml"
        assert parse_service_config(path.read_bytes(), source=str(path)) == cfg
        assert await client.load_config("svc") == cfg
        assert [p.name for p in path.parent.iterdir()] == ["svc.yaml"]  # no temp file left behind
        await client.remove_config("svc")
        assert not path.exists()
        await client.remove_config("svc")  # absent: nothing to do
        with pytest.raises(UnknownService, match="svc"):
            await client.load_config("svc")
        path.write_text("exec: x\nbogus: 1\n")
        with pytest.raises(ConfigError, match="bogus"):
            await client.load_config("svc")

    asyncio.run(body())
