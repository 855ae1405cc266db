"""Fixtures of the publisher tests: signing keys, a published site, real servers on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.procs import free_port, serving, zos_upgrade_cmd
from zos_upgrade.publisher.signing import generate_key
from zos_upgrade.publisher.tree import ReleaseTree

VERSIONS = ("0.1.0", "0.2.0", "1.0.0")


@dataclass(frozen=True)
class Site:
    """A directory holding a release tree (``releases/``) and the flists it points at (``flists/``)."""

    root: Path
    key: Ed25519PrivateKey
    static_port: int  # the port `python -m http.server` serves ``root`` on (flist URLs point there)

    @property
    def tree(self) -> Path:
        return self.root / "releases"

    def flist(self, version: str) -> Path:
        return self.root / "flists" / f"app-{version}.fl"

    def flist_url(self, version: str) -> str:
        return f"http://127.0.0.1:{self.static_port}/flists/app-{version}.fl"


def make_site(root: Path, key: Ed25519PrivateKey, static_port: int) -> Site:
    site = Site(root, key, static_port)
    (root / "flists").mkdir(parents=True)
    tree = ReleaseTree(site.tree)
    for version in VERSIONS:
        site.flist(version).write_bytes(f"flist of {version}\n".encode() * 100)
        tree.add(version, flist_url=site.flist_url(version), flist_file=site.flist(version), key=key)
    # published a while ago: a Last-Modified within a second of the answer could not validate
    an_hour_ago = time.time() - 3600
    for path in site.tree.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    return site


@pytest.fixture(scope="module")
def signer() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, signer: Ed25519PrivateKey) -> Site:
    return make_site(tmp_path_factory.mktemp("site"), signer, free_port())


@pytest.fixture(scope="module")
def release_url(site: Site) -> Iterator[str]:
    """``zos-upgrade release serve`` on the site's tree, as a child process."""
    port = free_port()
    cmd = zos_upgrade_cmd("release", "serve", "--root", str(site.tree), "--port", str(port))
    with serving(cmd, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def static_url(site: Site) -> Iterator[str]:
    """Python's own ``http.server`` on the whole site (flists and the same release tree)."""
    port = site.static_port
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
           "--directory", str(site.root)]
    with serving(cmd, port):
        yield f"http://127.0.0.1:{port}"


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection closes


class ScriptedServer:
    """A loopback HTTP server answering each path from a script: the answers in order, the last repeated.

    It plays the broken or hostile release servers that a well-behaved server cannot imitate.
    """

    def __init__(self) -> None:
        self.script: dict[str, list[Answer]] = {}
        self.hits: Counter[str] = Counter()
        self.request_headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.hits[self.path] += 1
                server.request_headers.append({k.lower(): v for k, v in self.headers.items()})
                answers = server.script.get(self.path) or [Answer(404, b'{"error":"not found"}')]
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response_only(answer.status)
                if "Date" not in answer.headers:  # a scripted Date replaces the real one
                    self.send_header("Date", self.date_time_string())
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.declare_length:
                    self.send_header("Content-Length", str(len(answer.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(answer.body)

            def log_message(self, *_: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A loopback port that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
