"""The rollout routes: nodes report and read the halt flag; people read the status, halt and resume.

``POST /api/rollout/<repo>/<name>/report``   a node's report (its node token)
``GET  /api/rollout/<repo>/<name>/halt``     ``{"halted": bool, "reason": str}`` (public, unsigned)
``POST /api/rollout/<repo>/<name>/halt``     halt by hand (the repository's write token)
``POST /api/rollout/<repo>/<name>/resume``   resume by hand (the repository's write token)
``PUT  /api/rollout/<repo>/<name>/plan``     the release's rollout plan (the repository's write token)
``GET  /api/rollout/<repo>/<name>``          counts, reasons, history, halt (public, like the read API)

A report is for a release the hub stores (any other name is 404): records are bounded by the
hub's own flists, not by what nodes invent.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from zos_upgrade.hub.names import validate_name
from zos_upgrade.hub.rollout import MAX_REASON_CHARS, MAX_REPORT_BYTES, HaltFlag, decode_report
from zos_upgrade.hubserver.auth import NodeGuard, TokenGuard
from zos_upgrade.hubserver.http import api_error, api_success, json_response, read_limited
from zos_upgrade.hubserver.rollout.record import Halt, RecordFull, ReleaseRecord
from zos_upgrade.hubserver.rollout.store import RolloutStore
from zos_upgrade.hubserver.storage import HubStorage
from zos_upgrade.rollout import RolloutError, parse_plan, plan_document

__all__ = ["RolloutAPI", "status_of"]

MAX_HALT_BYTES = 2048
MAX_PLAN_BYTES = 16 * 1024


def status_of(record: ReleaseRecord, *, history: bool = True) -> dict[str, Any]:
    """The status object of a release (``GET`` answer, ``hub rollout status --json``)."""
    halt = record.halt
    out: dict[str, Any] = {
        "repo": record.repo,
        "name": record.name,
        "counts": record.counts(),
        "halted": halt is not None,
        "halt": None if halt is None else {"at": halt.at, "by": halt.by, "reason": halt.reason},
        "reasons": [{"reason": reason, "nodes": n} for reason, n in record.reasons()],
        "plan": record.plan,
    }
    if history:
        out["history"] = [[p.at, p.waiting, p.upgraded, p.failed, p.rolled_back] for p in record.history]
    return out


class RolloutAPI:
    def __init__(self, storage: HubStorage, store: RolloutStore, guard: TokenGuard, nodes: NodeGuard) -> None:
        self.storage = storage
        self.store = store
        self.guard = guard
        self.nodes = nodes

    async def _release(self, request: Request) -> tuple[str, str]:
        repo = validate_name(request.path_params["repo"], "repository")
        name = validate_name(request.path_params["name"], "flist name")
        await run_in_threadpool(self.storage.resolve, repo, name)  # NotInStorage: 404
        return repo, name

    async def report(self, request: Request) -> Response:
        body = await read_limited(request, MAX_REPORT_BYTES)  # BodyTooLarge: 413
        report = decode_report(body)  # InvalidReport: 400, before the token is even looked at
        self.nodes.authorize(request, report.node_id)
        repo, name = await self._release(request)
        try:
            record = await self.store.report(repo, name, report)
        except RecordFull as exc:
            return api_error(request, str(exc), 507)
        return api_success(request, {"halted": record.halt is not None})

    async def halt_flag(self, request: Request) -> Response:
        repo, name = await self._release(request)
        halt = self.store.get(repo, name).halt
        flag = HaltFlag(halted=halt is not None, reason="" if halt is None else halt.reason)
        return json_response(request, {"halted": flag.halted, "reason": flag.reason})

    async def status(self, request: Request) -> Response:
        repo, name = await self._release(request)
        return json_response(request, status_of(self.store.get(repo, name)))

    async def halt(self, request: Request) -> Response:
        repo = self.guard.authorize(request, request.path_params["repo"])
        _, name = await self._release(request)
        body = await read_limited(request, MAX_HALT_BYTES)  # BodyTooLarge: 413
        reason = _reason(body)
        if reason is None:
            return api_error(request, 'body must be empty or {"reason": "<text of at most '
                                      f'{MAX_REASON_CHARS} chars>"}}', 400)
        record = await self.store.set_halt(repo, name, Halt(at=self.store.clock(), by=repo,
                                                            reason=reason or "halted by hand"))
        return api_success(request, status_of(record, history=False))

    async def plan(self, request: Request) -> Response:
        """``PUT .../plan``: the release's rollout plan document (the one its signed metadata carries),
        so the hub halts at the plan's own failure threshold."""
        repo = self.guard.authorize(request, request.path_params["repo"])
        _, name = await self._release(request)
        body = await read_limited(request, MAX_PLAN_BYTES)  # BodyTooLarge: 413
        try:
            plan = parse_plan(body, source="rollout plan")
        except RolloutError as exc:
            return api_error(request, str(exc), 400)
        record = await self.store.set_plan(repo, name, plan_document(plan))
        return api_success(request, status_of(record, history=False))

    async def resume(self, request: Request) -> Response:
        repo = self.guard.authorize(request, request.path_params["repo"])
        _, name = await self._release(request)
        record = await self.store.set_halt(repo, name, None)
        return api_success(request, status_of(record, history=False))


def _reason(body: bytes) -> str | None:
    """The reason of a halt request ("" for an empty body); None for anything else."""
    if not body.strip():
        return ""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or set(doc) - {"reason"}:
        return None
    reason = doc.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        return None
    return reason
