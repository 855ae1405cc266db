"""Where a v1 flist says its blocks live: its ``router.yaml`` member, else its ``backend`` metadata.

A single ``zdb://`` route over every id is written the way zflist does, as ``metadata.backend``
JSON; anything else as ``router.yaml`` (``pools: {name: {"00:7f": url, ...}}``, ``lookup: [name]``;
a range named twice, a replica, goes into a second pool, tried after the first).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from zos_upgrade.flist.model import FlistError
from zos_upgrade.flist.stores import Route
from zos_upgrade.flist.stores.zdb import ZDB_DEFAULT_PORT

__all__ = ["read_routes", "routes_for_writing"]


def read_routes(router_text: str | None, backend: str | None, source: str) -> list[Route]:
    """The routes of a v1 flist from its router.yaml text, else its ``backend`` metadata (may be none)."""
    if router_text is not None:
        return _parse_router_yaml(router_text, source)
    return [] if not backend else [Route(0, 255, _backend_url(backend, source))]


def routes_for_writing(routes: Sequence[Route]) -> tuple[str | None, str | None]:
    """``(metadata.backend JSON, router.yaml text)`` for ``routes``; at most one of them is set."""
    if len(routes) == 1 and (routes[0].start, routes[0].end) == (0, 255):
        backend = _backend_json(routes[0].url)
        if backend:
            return backend, None
    return None, _router_yaml(routes) if routes else None


def _backend_url(text: str, source: str) -> str:
    """``metadata.backend`` JSON -> ``zdb://[:password@]host:port[/namespace]``."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise FlistError(f"{source}: metadata 'backend' is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("host"), str) or not doc["host"]:
        raise FlistError(f"{source}: metadata 'backend' needs a 'host' string, got {text!r}")
    port = doc.get("port", ZDB_DEFAULT_PORT)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise FlistError(f"{source}: metadata 'backend' port {port!r} is not a TCP port")
    namespace, password = doc.get("namespace"), doc.get("password")
    if namespace is not None and not isinstance(namespace, str):
        raise FlistError(f"{source}: metadata 'backend' namespace {namespace!r} is not a string")
    if password is not None and not isinstance(password, str):
        raise FlistError(f"{source}: metadata 'backend' password is not a string")
    auth = f":{quote(password, safe='')}@" if password else ""
    host = f"[{doc['host']}]" if ":" in doc["host"] else doc["host"]
    tail = f"/{quote(namespace, safe='')}" if namespace else ""
    return f"zdb://{auth}{host}:{port}{tail}"


def _parse_router_yaml(text: str, source: str) -> list[Route]:
    """``router.yaml``: ``pools: {name: {"00:7f": url, ...}}`` and ``lookup: [name, ...]`` (hex ranges)."""
    import yaml  # here, not at the top: most flists name one backend, and a pack pays every import

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlistError(f"{source}: router.yaml is not YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("pools"), dict):
        raise FlistError(f"{source}: router.yaml needs a 'pools' mapping")
    pools = doc["pools"]
    lookup = doc.get("lookup", list(pools))
    if not isinstance(lookup, list):
        raise FlistError(f"{source}: router.yaml 'lookup' must be a list of pool names")
    routes = []
    for pool_name in lookup:
        pool = pools.get(pool_name)
        if not isinstance(pool, dict):
            raise FlistError(f"{source}: router.yaml: pool {pool_name!r} is missing or not a mapping")
        for span, url in pool.items():
            try:
                start_hex, end_hex = str(span).split(":")
                start, end = int(start_hex, 16), int(end_hex, 16)
            except ValueError as exc:
                raise FlistError(f"{source}: router.yaml: range {span!r} is not 'hh:hh'") from exc
            if not isinstance(url, str):
                raise FlistError(f"{source}: router.yaml: range {span!r} maps to {url!r}, not a URL")
            routes.append(Route(start, end, url))
    return routes


def _router_yaml(routes: Sequence[Route]) -> str:
    # a pool maps each range to one URL: a range given again (a replica) opens the next pool, so no
    # route is lost and reading the pools in lookup order gives back the routes in their own order
    pools: list[dict[str, str]] = [{}]
    for r in routes:
        span = f"{r.start:02x}:{r.end:02x}"
        if span in pools[-1]:
            pools.append({})
        pools[-1][span] = r.url
    names = ["default", *(f"replica-{i}" for i in range(1, len(pools)))]
    import yaml

    return yaml.safe_dump({"pools": dict(zip(names, pools, strict=True)), "lookup": names}, sort_keys=False)


def _backend_json(url: str) -> str | None:
    """The ``metadata.backend`` form of a zdb URL (None when the URL is not zdb)."""
    parts = urlsplit(url)
    if parts.scheme != "zdb" or not parts.hostname:
        return None
    doc: dict[str, Any] = {"host": parts.hostname, "port": parts.port or ZDB_DEFAULT_PORT}
    namespace = parts.path.strip("/")
    if namespace:
        doc["namespace"] = namespace
    if parts.password:
        doc["password"] = parts.password
    return json.dumps(doc)
