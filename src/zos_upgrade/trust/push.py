"""Upload a TUF repository's metadata to our hub: ``PUT <hub>/tuf/<repo>/metadata/<file>``.

Order matters, because the hub checks each file against what it already holds: the root versions
the hub lacks (each signed by its predecessor), then the current targets and snapshot if the hub
lacks them, ``timestamp.json`` last. Every request goes through :func:`zos_upgrade.net.fetch`
(timeouts, retries on transport errors and 5xx, size limits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from zos_upgrade.net import FetchResult, HTTPStatusError, RetryPolicy, fetch
from zos_upgrade.trust.errors import TrustRepositoryError
from zos_upgrade.trust.layout import hub_metadata_url, metadata_filename
from zos_upgrade.trust.repository import TrustRepository

__all__ = ["PushResult", "push"]

_MAX_ANSWER = 64 * 1024 * 1024


@dataclass(frozen=True)
class PushResult:
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]


async def _hub_file(client: httpx.AsyncClient, url: str) -> bytes | None:
    answer = await fetch(client, url, max_bytes=_MAX_ANSWER, expect=(200, 404))
    return None if answer.status == 404 else answer.body


async def _hub_version(client: httpx.AsyncClient, url: str) -> int | None:
    """The version of the metadata file at ``url`` on the hub, None when it has none."""
    body = await _hub_file(client, url)
    if body is None:
        return None
    try:
        version = json.loads(body)["signed"]["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TrustRepositoryError(f"{url}: the hub answered something that is not TUF metadata") from exc
    if not isinstance(version, int):
        raise TrustRepositoryError(f"{url}: the hub's metadata has no integer version")
    return version


async def _put(client: httpx.AsyncClient, url: str, data: bytes, token: str) -> FetchResult:
    try:
        return await fetch(
            client,
            url,
            method="PUT",
            content=data,
            max_bytes=1024 * 1024,
            headers={"Authorization": f"bearer {token}", "Content-Type": "application/json"},
            retry=RetryPolicy(),
        )
    except HTTPStatusError as exc:
        raise TrustRepositoryError(f"the hub refused {url}: {exc}") from exc


async def push(
    repo: TrustRepository, hub: str, name: str, token: str, *, timeout: float = 30.0
) -> PushResult:
    """Upload what hub repository ``name`` lacks of ``repo``'s current metadata."""
    base = hub_metadata_url(hub, name)
    folder: Path = repo.metadata_dir
    uploaded: list[str] = []
    skipped: list[str] = []
    async with httpx.AsyncClient(timeout=timeout) as client:
        have_root = await _hub_version(client, base + "root.json") or 0
        ours = repo.root.signed.version
        if have_root > ours:
            raise TrustRepositoryError(
                f"{base}root.json is version {have_root}, newer than ours ({ours}): push from the newer copy"
            )
        files = [metadata_filename("root", v) for v in range(have_root + 1, ours + 1)]
        skipped += [metadata_filename("root", v) for v in range(1, have_root + 1)]
        for role, md in (("targets", repo.targets), ("snapshot", repo.snapshot)):
            filename = metadata_filename(role, md.signed.version)
            theirs = await _hub_file(client, base + filename)
            if theirs is None:
                files.append(filename)
            elif theirs == (folder / filename).read_bytes():
                skipped.append(filename)
            else:
                # the hub's online snapshot key signed this version number too: ours must move past it
                raise TrustRepositoryError(
                    f"{base}{filename} differs from ours (signed on the hub by its online key?); "
                    f"run `zos-upgrade trust sign --renew {role}` until our version is past the hub's"
                )
        hub_ts = await _hub_version(client, base + "timestamp.json")
        if hub_ts is not None and hub_ts >= repo.timestamp.signed.version:
            # the hub's online key signed newer timestamps: ours must still be the newest
            repo.timestamp_only(at_least=hub_ts + 1)
        files.append("timestamp.json")
        for filename in files:
            await _put(client, base + filename, (folder / filename).read_bytes(), token)
            uploaded.append(filename)
    return PushResult(tuple(uploaded), tuple(skipped))
