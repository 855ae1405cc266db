"""Fixtures of the node tests: a real hub server (a child process), a hostile one, a controlled clock."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.procs import free_port, serving, zos_upgrade_cmd
from zos_upgrade.fsutil import atomic_symlink
from zos_upgrade.hub.client import HubClient
from zos_upgrade.net import Backoff, RetryPolicy

HERE = Path(__file__).parent
# one attempt per check: the watcher's own backoff is what these tests watch, not the client's retries
ONE_ATTEMPT = RetryPolicy(attempts=1, backoff=Backoff(base=0.01, cap=0.01), deadline=5.0)


@dataclass
class HubServer:
    """A running ``zos-upgrade hub serve`` and its storage folder."""

    url: str
    root: Path
    port: int

    def new_repo(self) -> str:
        repo = f"r{uuid.uuid4().hex[:10]}"
        (self.root / repo).mkdir()
        return repo

    def put(self, repo: str, name: str, content: bytes | None = None) -> Path:
        path = self.root / repo / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(content if content is not None else f"flist {name} {uuid.uuid4()}".encode())
        os.replace(tmp, path)
        return path

    def link(self, repo: str, name: str, target: str) -> None:
        atomic_symlink(target, self.root / repo / name)

    def remove(self, repo: str, name: str) -> None:
        (self.root / repo / name).unlink()

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> HubClient:
        return HubClient(self.url, retry=ONE_ATTEMPT, timeout=5.0, transport=transport)


def hub_process(root: Path, port: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return serving(zos_upgrade_cmd("hub", "serve", "--root", str(root), "--port", str(port)), port)


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    root = Path(tempfile.mkdtemp(prefix="zu-node-hub-"))
    port = free_port()
    try:
        with hub_process(root, port):
            yield HubServer(f"http://127.0.0.1:{port}", root, port)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[tuple[str, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="zu-node-hostile-"))
    port = free_port()
    try:
        with serving([sys.executable, str(HERE / "hostile_hub.py"), str(folder), str(port)], port):
            yield f"http://127.0.0.1:{port}", folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hostile(hostile_server: tuple[str, Path]) -> tuple[str, Path]:
    """A lying hub: ``(url, folder)``; the test writes the answers into ``folder`` (empty at start)."""
    url, folder = hostile_server
    for leftover in folder.iterdir():
        leftover.unlink()
    return url, folder


@dataclass
class Ticker:
    """An injectable sleep that waits for the test to say "time passed": each ``tick()`` lets one
    sleeping watcher go on. ``delays`` records every delay the watcher asked for."""

    delays: list[float] = field(default_factory=list)
    _ticks: asyncio.Queue[None] = field(default_factory=asyncio.Queue)

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await self._ticks.get()

    async def step(self, checks: int = 1, timeout: float = 10.0) -> None:
        """Let the watcher run ``checks`` more checks and wait until it sleeps again after each."""
        for _ in range(checks):
            before = len(self.delays)
            self._ticks.put_nowait(None)
            await wait_until(lambda before=before: len(self.delays) > before, timeout)  # type: ignore[misc]


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


class RecordingTransport(httpx.AsyncHTTPTransport):
    """The real HTTP transport, noting each request's ``If-None-Match`` and the answer's status."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self.seen.append((request.url.path, request.headers.get("if-none-match"), response.status_code))
        return response
