"""asyncio imported without OpenSSL (issue 19 item 5): a lean process polls over http without
loading ``ssl``, and TLS still works in that same process once something needs it.

Each case runs a fresh interpreter (``ssl`` must not be loaded before the case starts) against real
loopback servers: a plain HTTP one, and an HTTPS one with a certificate made for the test.
"""

from __future__ import annotations

import http.server
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tls_front import certificate

REPO = Path(__file__).resolve().parents[1]


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(tls: ssl.SSLContext | None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def plain() -> Iterator[str]:
    yield from _serve(None)


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for url in _serve(context):
        yield url, cert


# the child: lean import, an http poll through the daemon's client, then TLS three ways
CHILD = r"""
import sys
from zos_upgrade.lazytls import import_asyncio_without_tls, tls_deferred
import_asyncio_without_tls()
import asyncio
from zos_upgrade.leanhttp import LeanClient
from zos_upgrade.net import RetryPolicy, fetch

ONE = RetryPolicy(attempts=1, deadline=5.0, total=5.0)
plain, secure, cafile = sys.argv[1:4]

async def lean(url, context=None):
    async with LeanClient(timeout=5.0) as client:
        client._ssl = context  # the test's CA instead of certifi's bundle
        return (await fetch(client, url, max_bytes=1000, retry=ONE)).body.decode()

assert asyncio.run(lean(plain + "/poll")) == "hello /poll"
print("after-poll", "ssl" in sys.modules, "_ssl" in sys.modules, "_hashlib" in sys.modules, tls_deferred())
import ssl  # the first import of ssl in this process, as an https poll or httpx makes it
print("rearmed", tls_deferred(), asyncio.sslproto.ssl is ssl, asyncio.base_events.ssl is ssl)
context = ssl.create_default_context(cafile=cafile)
print("lean-tls", asyncio.run(lean(secure + "/lean", context)))
import httpx

async def with_httpx():
    async with httpx.AsyncClient(verify=context) as client:
        return (await client.get(secure + "/httpx")).text

print("httpx-tls", asyncio.run(with_httpx()))
try:
    asyncio.run(lean(secure + "/untrusted", ssl.create_default_context()))
except Exception as exc:
    print("untrusted", type(exc).__name__, "CERTIFICATE_VERIFY_FAILED" in str(exc))
"""


def test_a_lean_process_polls_without_openssl_and_tls_works_after(plain: str,
                                                                  secure: tuple[str, Path]) -> None:
    url, cert = secure
    done = subprocess.run([sys.executable, "-c", CHILD, plain, url, str(cert)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # the poll loaded neither ssl nor OpenSSL's libcrypto (hashlib's backend)
    assert lines[0] == "after-poll False False False True", lines
    assert lines[1] == "rearmed False True True", lines
    assert lines[2] == "lean-tls hello /lean"
    assert lines[3] == "httpx-tls hello /httpx"
    assert lines[4] == "untrusted NetworkError True", lines  # a bad certificate is still refused


def test_nothing_is_deferred_when_asyncio_is_already_loaded() -> None:
    code = ("import asyncio, sys\nfrom zos_upgrade.lazytls import import_asyncio_without_tls, tls_deferred\n"
            "import_asyncio_without_tls()\nprint('ssl' in sys.modules, tls_deferred())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


def test_an_asyncio_that_does_not_take_the_module_back_is_refused_loudly() -> None:
    import asyncio.sslproto  # noqa: F401  # holding the real ssl: another module cannot replace it

    from zos_upgrade.lazytls import rearm

    other = type(sys)("ssl")
    with pytest.raises(ImportError, match="do not take the ssl module back"):
        rearm(other)
