"""Back-ends for the one behavioural suite: zinit (line, JSON-RPC) via the emulator, real supervisord."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.supervisord import running_supervisord
from tests.support.zinit_emulator import running_zinit
from zos_upgrade.supervisor import ServiceConfig, ServiceStatus, Supervisor
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.supervisor.zinit import ZinitClient

BACKENDS = ("zinit-line", "zinit-jsonrpc", "supervisord")
_names = itertools.count()


@dataclass
class Backend:
    kind: str
    make: Callable[[], Supervisor]

    @staticmethod
    def unique(prefix: str) -> str:
        """A service name no other test in this module uses (the peers live for the module)."""
        return f"{prefix}-{next(_names)}"


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    kind: str = request.param
    if kind == "supervisord":
        with running_supervisord() as sd:
            yield Backend(kind, lambda: SupervisordClient(
                sd.socket_path, include_dir=sd.include_dir, timeout=5, start_seconds=0))
        return
    root = Path(tempfile.mkdtemp(prefix="zu-root-"))
    protocol = kind.removeprefix("zinit-")
    try:
        with running_zinit(root, protocol) as sock:
            yield Backend(kind, lambda: ZinitClient(sock, protocol, root=root, timeout=5))  # type: ignore[arg-type]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def python_service(code: str, **kw: object) -> ServiceConfig:
    """A service running ``python -c code`` (quoted for zinit's and supervisord's shlex split)."""
    quoted = code.replace("\\", "\\\\").replace('"', '\\"')
    return ServiceConfig(exec=f'{sys.executable} -c "{quoted}"', **kw)  # type: ignore[arg-type]


async def wait_status(sup: Supervisor, name: str, pred: Callable[[ServiceStatus], bool],
                      timeout: float = 8.0) -> ServiceStatus:
    """Poll ``status(name)`` until ``pred`` holds; fail the test with the last status otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await sup.status(name)
        if pred(status):
            return status
        if loop.time() > deadline:
            raise AssertionError(f"{name}: condition not reached in {timeout}s; last status {status}")
        await asyncio.sleep(0.03)


async def wait_for(pred: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 8.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = pred()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s")
        await asyncio.sleep(0.03)
