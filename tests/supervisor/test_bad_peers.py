"""Bad input at the socket boundary: each case a clear typed error, never a hang or a huge allocation."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.supervisor.fake_peer import fake_peer, hang, send, stream
from tests.support.procs import REPO
from zos_upgrade.supervisor import (
    InvalidServiceName,
    ProtocolError,
    ServiceConfig,
    SupervisorError,
    SupervisorUnavailable,
    UnknownService,
)
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.supervisor.zinit import ZinitClient

KINDS = ("zinit-line", "zinit-jsonrpc", "supervisord")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zu-bad-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def client(kind: str, path: Path, timeout: float = 2.0) -> Any:
    if kind == "supervisord":
        return SupervisordClient(path, include_dir=path.parent / "programs", timeout=timeout)
    protocol = kind.removeprefix("zinit-")
    return ZinitClient(path, protocol, root=path.parent / "root", timeout=timeout)  # type: ignore[arg-type]


def call_list(kind: str, path: Path, timeout: float = 2.0) -> Any:
    async def body() -> Any:
        sup = client(kind, path, timeout)
        try:
            return await sup.list()
        finally:
            await sup.aclose()

    return asyncio.run(body())


def http_reply(body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % size) + body


@pytest.mark.parametrize("kind", [*KINDS, "zinit-auto"])
def test_socket_missing(kind: str, sock_dir: Path) -> None:
    with pytest.raises(SupervisorUnavailable, match="does not exist"):
        call_list(kind, sock_dir / "absent.sock")


@pytest.mark.parametrize("kind", KINDS)
def test_path_is_not_a_socket(kind: str, sock_dir: Path) -> None:
    plain = sock_dir / "plain.sock"
    plain.write_text("I am a file")
    with pytest.raises(SupervisorUnavailable, match="not a unix socket"):
        call_list(kind, plain)


CHILD = textwrap.dedent("""
    import asyncio, os, sys
    import concurrent.futures.thread  # imported lazily by to_thread: load it while we may read it
    from tests.supervisor.test_bad_peers import call_list
    from zos_upgrade.supervisor import SupervisorUnavailable
    os.setgid(65534)
    os.setuid(65534)  # tests run as root, for whom permissions do not deny: drop them first
    try:
        call_list(sys.argv[1], __import__("pathlib").Path(sys.argv[2]))
    except SupervisorUnavailable as exc:
        print("UNAVAILABLE", exc)
        sys.exit(0)
    print("NO ERROR")
    sys.exit(1)
""")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("locked", ["directory", "socket"])
def test_no_permission(kind: str, locked: str, sock_dir: Path) -> None:
    path = sock_dir / "s.sock"
    os.chmod(sock_dir, 0o755)
    with fake_peer(path, send(b"{}")) as peer:
        if locked == "directory":
            os.chmod(sock_dir, 0o700)  # nobody cannot even look inside
        else:
            os.chmod(path, 0o000)  # nobody may not connect
        out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], cwd=REPO,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "permission denied" in out.stdout
        assert peer.connections == 0


TRUNCATED = {
    "zinit-line": b'{"state": "ok", "body": {"a": "Runn',
    "zinit-jsonrpc": b'{"jsonrpc": "2.0", "id": 1, "result": {"a": "Runn',
    "supervisord": http_reply(b"<?xml version='1.0'?><methodResponse><params>", length=400),
}


@pytest.mark.parametrize("kind", KINDS)
def test_peer_closes_mid_reply(kind: str, sock_dir: Path) -> None:
    with fake_peer(sock_dir / "s.sock", send(TRUNCATED[kind])), pytest.raises(ProtocolError):
        call_list(kind, sock_dir / "s.sock")


GARBAGE = {
    "zinit-line": b"\x00\xffthis is not json\n",
    "zinit-jsonrpc": b"\x00\xffthis is not json\n",
    "zinit-auto": b"\x00\xffthis is not json\n",
    "supervisord": http_reply(b"\x00\xffthis is not xml"),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_reply(kind: str, sock_dir: Path) -> None:
    with fake_peer(sock_dir / "s.sock", send(GARBAGE[kind])), pytest.raises(ProtocolError):
        call_list(kind, sock_dir / "s.sock")


def test_garbage_http_status_line(sock_dir: Path) -> None:
    with fake_peer(sock_dir / "s.sock", send(b"SPEAK FRIEND\r\n\r\n")), pytest.raises(ProtocolError):
        call_list("supervisord", sock_dir / "s.sock")


WRONG_SHAPE = [
    ("zinit-line", b'{"status": "ok"}'),  # no "state"
    ("zinit-line", b'{"state": "fine", "body": null}'),
    ("zinit-line", b'{"state": "ok", "body": ["a", "b"]}'),  # list must be an object
    ("zinit-line", b'{"state": "ok", "body": {"a": 1}}'),  # states are strings
    ("zinit-line", b'[1, 2, 3]'),
    ("zinit-jsonrpc", b'{"jsonrpc": "2.0", "id": 1, "result": [1, 2]}\n'),
    ("zinit-jsonrpc", b'{"jsonrpc": "1.0", "id": 1, "result": {}}\n'),
    ("zinit-jsonrpc", b'{"jsonrpc": "2.0", "id": 99, "result": {}}\n'),  # not our request id
    ("zinit-jsonrpc", b'{"jsonrpc": "2.0", "id": 1, "error": {"code": "x"}}\n'),
    ("supervisord", http_reply(xmlrpc.client.dumps((5,), methodresponse=True).encode())),
    ("supervisord", http_reply(xmlrpc.client.dumps(([{"name": 3}],), methodresponse=True).encode())),
]


@pytest.mark.parametrize(("kind", "reply"), WRONG_SHAPE)
def test_reply_of_the_wrong_shape(kind: str, reply: bytes, sock_dir: Path) -> None:
    with fake_peer(sock_dir / "s.sock", send(reply)), pytest.raises(ProtocolError):
        call_list(kind, sock_dir / "s.sock")


def test_status_of_the_wrong_shape(sock_dir: Path) -> None:
    reply = b'{"state": "ok", "body": {"name": "a", "pid": "12", "state": "Running", "target": "Up"}}'

    async def body() -> None:
        await ZinitClient(sock_dir / "s.sock", "line", timeout=2).status("a")

    with fake_peer(sock_dir / "s.sock", send(reply)), pytest.raises(ProtocolError, match="wrong shape"):
        asyncio.run(body())


HUGE_PREFIX = {
    "zinit-line": b'{"state": "ok", "body": {"a": "',
    "zinit-jsonrpc": b'{"jsonrpc": "2.0", "id": 1, "result": {"a": "',
    "supervisord": b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n"
                   b"<?xml version='1.0'?><methodResponse><params><param><value><string>",
}


@pytest.mark.parametrize("kind", KINDS)
def test_100_mb_reply_is_refused_without_reading_it(kind: str, sock_dir: Path) -> None:
    with fake_peer(sock_dir / "s.sock", stream(HUGE_PREFIX[kind])) as peer:
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match="larger than"):
                call_list(kind, sock_dir / "s.sock", timeout=10)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        peer.close()
        assert peak < 32 * 1024 * 1024, f"peak allocation {peak} bytes"
        assert peer.sent < 60 * 1024 * 1024, "the client kept reading after its limit"


@pytest.mark.parametrize("kind", [*KINDS, "zinit-auto"])
def test_a_hanging_peer_times_out(kind: str, sock_dir: Path) -> None:
    with fake_peer(sock_dir / "s.sock", hang), pytest.raises(SupervisorUnavailable, match="within"):
        call_list(kind, sock_dir / "s.sock", timeout=0.4)


BAD_NAMES = ["", "two words", "a/b", "../etc", "..", "nul\0byte", "new\nline", "tab\tbed", "x" * 201, "a:b"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_before_anything_is_sent(kind: str, name: str, sock_dir: Path) -> None:
    async def body() -> None:
        sup = client(kind, sock_dir / "s.sock")
        cfg = ServiceConfig(exec="sleep 1")
        calls = [sup.status(name), sup.start(name), sup.stop(name), sup.monitor(name), sup.forget(name),
                 sup.kill(name, "SIGKILL"), sup.install_config(name, cfg), sup.remove_config(name)]
        for coro in calls:
            with pytest.raises(InvalidServiceName):
                await coro
        await sup.aclose()

    with fake_peer(sock_dir / "s.sock", send(b"{}")) as peer:
        asyncio.run(body())
    assert peer.connections == 0 and peer.received == b""
    assert not (sock_dir / "root").exists() and not (sock_dir / "programs").exists()


@pytest.mark.parametrize(("message", "code", "kind"), [
    ('service name "x" unknown', -32000, UnknownService),
    ("internal trouble", -32603, SupervisorError),
])
def test_jsonrpc_error_objects_are_typed(
    message: str, code: int, kind: type[Exception], sock_dir: Path
) -> None:
    reply = b'{"jsonrpc": "2.0", "id": 1, "error": {"code": %d, "message": "%s"}}\n' % (
        code, message.replace('"', '\\"').encode())
    with fake_peer(sock_dir / "s.sock", send(reply)), pytest.raises(kind, match=message[-7:]) as info:
        call_list("zinit-jsonrpc", sock_dir / "s.sock")
    assert type(info.value) is kind


def test_bad_signal_is_refused_before_anything_is_sent(sock_dir: Path) -> None:
    async def body() -> None:
        with pytest.raises(SupervisorError, match="unknown signal"):
            await ZinitClient(sock_dir / "s.sock", "line").kill("svc", "SIGNOPE")

    with fake_peer(sock_dir / "s.sock", send(b"{}")) as peer:
        asyncio.run(body())
    assert peer.connections == 0




def trickle(conn: Any, peer: Any) -> None:
    """Headers, then one byte of body every 0.1 s: each read succeeds, the reply never completes."""
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n")
    while not peer.release.wait(0.1):
        conn.sendall(b" ")


@pytest.mark.parametrize("kind", KINDS)
def test_a_trickling_peer_times_out_as_a_whole(kind: str, sock_dir: Path) -> None:
    responder = trickle if kind == "supervisord" else trickle_json
    with fake_peer(sock_dir / "s.sock", responder), pytest.raises(SupervisorUnavailable, match="within"):
        call_list(kind, sock_dir / "s.sock", timeout=0.5)


def trickle_json(conn: Any, peer: Any) -> None:
    conn.sendall(b'{"state": "ok", "body": {"a": "')
    while not peer.release.wait(0.1):
        conn.sendall(b"x")


def _xmlrpc_fault(code: int, text: str) -> bytes:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), methodresponse=True).encode()
    return b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_supervisord_spawn_error_on_start_is_left_to_status(sock_dir: Path) -> None:
    """A real supervisord answers startProcess with SPAWN_ERROR when the program is in BACKOFF by the
    time the call returns: it exited at once, which on a loaded machine can beat the RPC. ``start``
    only asks for the start (as with zinit), so probation reports the failure with the program's
    output instead of the restart step failing on a bare fault. Any other fault still raises."""
    path = sock_dir / "sd.sock"

    async def start() -> None:
        sup = client("supervisord", path)
        try:
            await sup.start("gamma")
        finally:
            await sup.aclose()

    with fake_peer(path, send(_xmlrpc_fault(50, "SPAWN_ERROR: gamma"))):
        asyncio.run(start())  # no error
    path = sock_dir / "sd2.sock"
    with fake_peer(path, send(_xmlrpc_fault(20, "NO_FILE: can't find command 'x'"))), \
            pytest.raises(SupervisorError, match="NO_FILE"):
        asyncio.run(start())
