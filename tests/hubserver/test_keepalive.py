"""The hub keeps idle connections longer than clients pool them, so a client never sends a request on
a connection the server is closing at that instant (the load benchmark's "Server disconnected")."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.hub import HubFactory

HTTPX_POOL_EXPIRY = 5.0  # httpx's default keepalive_expiry: how long a node reuses an idle connection


def _get(sock: socket.socket, host: str) -> bytes:
    sock.sendall(f"GET /api/repositories HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = head.split(b"\r\n")
    length = int(next(h.split(b":")[1] for h in headers if h.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return headers[0]


def test_an_idle_connection_outlives_the_clients_pool_expiry(
    start_hub: HubFactory, golden_root: Path
) -> None:
    with start_hub(golden_root) as hub:
        parts = urlsplit(hub.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            assert _get(sock, parts.netloc).endswith(b"200 OK")
            time.sleep(HTTPX_POOL_EXPIRY + 0.5)  # idle for longer than any client keeps it
            assert _get(sock, parts.netloc).endswith(b"200 OK")
