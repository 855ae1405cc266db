"""An idle daemon carries no transaction stack (issue 19, item 5): the HTTP client, crypto and block
stacks load at its first transaction, and work there.

A real ``zos-upgrade daemon`` follows a real hub (insecure, and through TUF); the test-only
``ZOS_UPGRADE_DUMP_MODULES`` switch makes it write the names of its loaded modules after each round.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon_node import LINK, Node, wait_for
from tests.e2e.trust_node import trusted_node
from tests.support.procs import stop_process
from tests.support.tls_front import certificate, tls_front
from zos_upgrade.daemon.loop import DUMP_MODULES_ENV

# what a transaction needs and a poll must not load: the HTTP client, the block codecs and ciphers,
# the block stores and the tree writer, rich (a terminal's), TUF and its crypto
BLOCKS = ("cramjam", "xxtea", "redis", "capnp", "zos_upgrade.flist.blocks", "zos_upgrade.flist.stores",
          "zos_upgrade.flist.materialize", "zos_upgrade.flist.cache")
# OpenSSL: ssl (asyncio's import of it is deferred, zos_upgrade/lazytls.py) and hashlib's backend
OPENSSL = ("ssl", "_ssl", "_hashlib", "hmac", "http.client", "xmlrpc.client", "importlib.metadata")
HEAVY = (*BLOCKS, *OPENSSL, "rich", "httpx", "httpcore", "cryptography", "tuf", "securesystemslib", "boto3")


@pytest.fixture
def dump(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "modules.txt"
    os.environ[DUMP_MODULES_ENV] = str(path)  # Node.start passes the environment on
    try:
        yield path
    finally:
        os.environ.pop(DUMP_MODULES_ENV, None)


def loaded(dump: Path) -> set[str]:
    return set(dump.read_text().split())


def heavy_in(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules)


# what a transaction loads (the block fetch through httpx, the decoding)
TRANSACTION = frozenset({"httpx", "cramjam", "zos_upgrade.flist.blocks"})


def rounds_then_upgrade(node: Node, dump: Path, publish: object, heavy: tuple[str, ...],
                        after: frozenset[str] = TRANSACTION) -> None:
    """The long-lived daemon's idle rounds load none of ``heavy``; its transaction loads and uses them."""
    daemon = node.start()
    try:
        wait_for(dump.exists, what="the daemon's first round")
        wait_for(lambda: node.status()["last_result"] == "up-to-date", what="an idle round")
        dump.unlink()
        wait_for(dump.exists, what="another idle round")  # several polls, each answered 304
        idle = loaded(dump)
        assert "zos_upgrade.daemon.loop" in idle  # the dump is the daemon's own
        assert heavy_in(idle, heavy) == []
        assert callable(publish)
        publish()
        wait_for(lambda: node.status()["current_version"] == "1.1.0", timeout=60, what="the upgrade")
        status = node.status()
        assert status["last_result"] == "upgraded", status
        assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
        dump.unlink(missing_ok=True)
        wait_for(dump.exists, what="a round after the upgrade")
        # the transaction fetched the blocks through httpx and decoded them: those stacks are in
        assert after <= loaded(dump)
    finally:
        stop_process(daemon)


def test_an_idle_daemon_following_a_hub_loads_no_transaction_stack(node: Node, dump: Path) -> None:
    node.release("1.0.0")
    first = node.once()
    assert first.returncode == 0, first.stderr
    rounds_then_upgrade(node, dump, lambda: node.release("1.1.0"), HEAVY)


def test_an_idle_tuf_daemon_loads_no_transaction_stack_nor_python_tuf(dump: Path) -> None:
    with trusted_node() as trusted:
        trusted.publish("1.0.0")
        first = trusted.node.once()
        assert first.returncode == 0, first.stderr
        # ngclient refreshes in a child process (trust/isolated.py) and an unchanged timestamp is a
        # 304: the daemon itself never imports python-tuf until the upgrade's download needs it
        rounds_then_upgrade(trusted.node, dump, lambda: trusted.publish("1.1.0"), HEAVY,
                            after=TRANSACTION | {"tuf"})


def test_a_daemon_whose_asyncio_came_without_openssl_upgrades_over_https(
        node: Node, dump: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio was imported without ssl (lazytls.py): the first https poll loads it and hands it to
    asyncio, and the poll (asyncio's TLS) and the transaction (httpx's) both work over TLS."""
    cert, key = certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # both transports' rule (leanhttp.py, httpx)
    with tls_front(int(node.box.hub_url.rsplit(":", 1)[1].rstrip("/")), cert, key) as front:
        node.write_config(source=f'hub = "{front.url}"\nflist = "{LINK}"\n')
        node.release("1.0.0")
        daemon = node.start()
        try:
            wait_for(lambda: node.status()["current_version"] == "1.0.0", timeout=60, what="the install")
            assert node.box.wait_version("alpha", "1.0.0") == "1.0.0"
            node.release("1.1.0")
            wait_for(lambda: node.status()["current_version"] == "1.1.0", timeout=60, what="the upgrade")
            assert node.status()["last_result"] == "upgraded"
            dump.unlink(missing_ok=True)
            wait_for(dump.exists, what="a round after the upgrade")
            modules = loaded(dump)
        finally:
            stop_process(daemon)
        assert {"zos_upgrade.lazytls", "ssl", "httpx"} <= modules
        assert front.connections > 0  # the node spoke TLS, not around the front
