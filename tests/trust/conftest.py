"""A TUF repository on disk behind a forging proxy on loopback, and a node-side TrustedRepo for it."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import free_port, serving
from tests.support.tuf_repo import NOW, TufTestRepo
from zos_upgrade.trust.client import TrustedRepo
from zos_upgrade.trust.fetcher import HttpxFetcher

REPO = "tf-zos"
_COUNTER = itertools.count()


@dataclass
class Proxy:
    """The forging proxy as one test sees it: its repository's files are under ``url + prefix``."""

    url: str
    rules_file: Path
    prefix: str = ""

    def rules(self, rules: dict[str, Any]) -> None:
        self.rules_file.write_text(json.dumps(rules))

    def forge(self, path: str, rule: dict[str, Any]) -> None:
        current = json.loads(self.rules_file.read_text()) if self.rules_file.exists() else {}
        current[path] = rule
        self.rules(current)

    def seen(self) -> list[str]:
        log = self.rules_file.with_name(self.rules_file.name + ".log")
        return log.read_text().splitlines() if log.exists() else []


@dataclass
class Clock:
    at: datetime = NOW + timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture(scope="session")
def proxy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """One forging proxy process per test session (worker), serving every test's repository folder."""
    base = tmp_path_factory.mktemp("tuf-repos")
    port = free_port()
    rules = base / "rules.json"
    rules.write_text("{}")
    cmd = [sys.executable, "-m", "tests.support.forging_proxy", f"dir:{base}::", str(port), str(rules)]
    with serving(cmd, port, cwd=Path(__file__).resolve().parents[2]):
        yield Proxy(f"http://127.0.0.1:{port}", rules, str(base))


@pytest.fixture
def tuf_repo(proxy_server: Proxy) -> TufTestRepo:
    return TufTestRepo(Path(proxy_server.prefix) / f"repo-{next(_COUNTER)}")


@pytest.fixture
def proxy(proxy_server: Proxy, tuf_repo: TufTestRepo) -> Proxy:
    """This test's view: no forgery yet, an empty request log, its repository's URL prefix."""
    proxy_server.rules({})
    proxy_server.rules_file.with_name(proxy_server.rules_file.name + ".log").write_text("")
    return Proxy(proxy_server.url, proxy_server.rules_file, "/" + tuf_repo.base.name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_client(tmp_path: Path, tuf_repo: TufTestRepo, proxy: Proxy,
                clock: Clock) -> Iterator[Callable[..., TrustedRepo]]:
    fetchers: list[HttpxFetcher] = []

    def make(**fetcher_options: Any) -> TrustedRepo:
        fetcher = HttpxFetcher(**fetcher_options)
        fetchers.append(fetcher)
        return TrustedRepo(tmp_path / "state" / "trust" / REPO, f"{proxy.url}{proxy.prefix}/metadata/",
                           f"{proxy.url}{proxy.prefix}/targets/", tuf_repo.root_file, fetcher, clock=clock,
                           name=REPO)

    yield make
    for fetcher in fetchers:
        fetcher.close()
