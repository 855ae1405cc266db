"""Fixtures of the flist tests: the golden zflist data and a real redis-server for the zdb:// store."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import free_port, stop_process, wait_for_port

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "flist-v1"


@pytest.fixture(scope="session")
def golden() -> Path:
    """The files made by the real zflist (see tests/data/README.md)."""
    return GOLDEN


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server on a free loopback port, in its own temp dir, stopped at the end."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
         "--appendonly", "no", "--databases", "4"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        stop_process(proc)
        if proc.stdout:
            proc.stdout.close()
