"""The hub's FleetLock endpoint (Zincati's protocol) at its root: ``POST /v1/pre-reboot`` and
``POST /v1/steady-state``, so the hub's URL is a node's ``rollout.fleet_lock.base_url``.

A counting semaphore per group, with recursive locking and ownership as the protocol says: a node
(its ``id``) that already holds a slot of its group is told yes again without taking a second one,
``steady-state`` frees the node's slot if it holds one and is a yes either way. A group has the
hub config's ``[fleet_lock.groups]`` size, else ``[fleet_lock] slots`` (1 by default). The holders
are kept in ``<root>/.fleet-lock.json`` (a hidden name: no repository can be called so), written
durably before the answer, so a hub restart forgets no slot. Refusals carry the protocol's error
body ``{"kind", "value"}``: ``failed_lock_semaphore_full`` (409) when the group is full, and 400 for
a request without the ``fleet-lock-protocol: true`` header or with a body that is not
``{"client_params": {"id", "group"}}`` (id and group by the node config's own rules).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from zos_upgrade.config import NODE_GROUP, NODE_ID
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import atomic_write_bytes, read_at_most
from zos_upgrade.hubserver.http import BodyTooLarge, limited_stream
from zos_upgrade.rollout.fleetlock import HEADER, LockError, LockRequest

__all__ = ["STATE_FILE", "FleetLockAPI", "FleetLockStateError"]

log = logging.getLogger(__name__)

STATE_FILE = ".fleet-lock.json"
_MAX_BODY = 4096
_MAX_STATE = 16 * 1024 * 1024


class FleetLockStateError(ZosUpgradeError):
    """The hub's FleetLock state file cannot be read: the hub does not start over it."""


class _State(msgspec.Struct, forbid_unknown_fields=True):
    groups: dict[str, list[str]] = msgspec.field(default_factory=dict)  # group -> holder ids, in order


def _refuse(kind: str, value: str, status: int) -> Response:
    return Response(msgspec.json.encode(LockError(kind=kind, value=value)), status,
                    media_type="application/json")


class FleetLockAPI:
    """The two FleetLock routes over one persistent semaphore set."""

    def __init__(self, root: Path, *, slots: int = 1, groups: Mapping[str, int] | None = None) -> None:
        self.path = root / STATE_FILE
        self.slots = slots
        self.sizes = dict(groups or {})
        self._lock = asyncio.Lock()
        self.state = self._load()

    def size(self, group: str) -> int:
        return self.sizes.get(group, self.slots)

    def holders(self, group: str) -> list[str]:
        return list(self.state.groups.get(group, []))

    def _load(self) -> _State:
        try:
            data = read_at_most(self.path, _MAX_STATE)
        except OSError as exc:
            raise FleetLockStateError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if data is None:
            return _State()
        try:
            return msgspec.json.decode(data, type=_State, strict=True)
        except msgspec.DecodeError as exc:
            raise FleetLockStateError(
                f"{self.path} is not the hub's FleetLock state ({exc}); fix or remove it (removing it "
                "frees every slot)") from exc

    async def pre_reboot(self, request: Request) -> Response:
        parsed = await self._request(request)
        if isinstance(parsed, Response):
            return parsed
        node, group = parsed
        async with self._lock:
            holders = self.state.groups.setdefault(group, [])
            if node in holders:
                return Response(status_code=200)  # recursive: the slot it holds already
            size = self.size(group)
            if len(holders) >= size:
                log.info("FleetLock semaphore full", extra={"group": group, "id": node, "slots": size})
                return _refuse("failed_lock_semaphore_full",
                               f"semaphore of group {group!r} currently full: all {size} slot(s) are locked "
                               f"already (by {', '.join(holders)})", 409)
            holders.append(node)
            await self._save()
        log.info("FleetLock slot taken", extra={"group": group, "id": node})
        return Response(status_code=200)

    async def steady_state(self, request: Request) -> Response:
        parsed = await self._request(request)
        if isinstance(parsed, Response):
            return parsed
        node, group = parsed
        async with self._lock:
            holders = self.state.groups.get(group, [])
            if node in holders:
                holders.remove(node)
                if not holders:
                    del self.state.groups[group]
                await self._save()
                log.info("FleetLock slot released", extra={"group": group, "id": node})
        return Response(status_code=200)

    async def _save(self) -> None:
        document = msgspec.json.encode(self.state) + b"\n"
        await run_in_threadpool(atomic_write_bytes, self.path, document)

    async def _request(self, request: Request) -> tuple[str, str] | Response:
        """(id, group) of a well-formed request, or the refusal to send."""
        if request.headers.get(HEADER, "").strip().lower() != "true":
            return _refuse("missing_fleet_lock_header",
                           f"the request has no `{HEADER}: true` header (FleetLock requires it)", 400)
        try:
            body = b"".join([chunk async for chunk in limited_stream(request, _MAX_BODY)])
        except BodyTooLarge as exc:
            return _refuse("bad_request", str(exc), 413)
        try:
            params = msgspec.json.decode(body, type=LockRequest).client_params
        except msgspec.DecodeError as exc:
            return _refuse("bad_request",
                           f'body is not {{"client_params": {{"id": ..., "group": ...}}}}: {exc}', 400)
        if not NODE_ID.fullmatch(params.id):
            return _refuse("bad_request", f"client_params.id = {params.id[:80]!r} is not a node id (1 to 128 "
                                          "letters, digits or . _ : -)", 400)
        if not NODE_GROUP.fullmatch(params.group):
            return _refuse("bad_request", f"client_params.group = {params.group[:80]!r} does not match "
                                          "^[a-zA-Z0-9.-]+$ (at most 63 characters)", 400)
        return params.id, params.group
