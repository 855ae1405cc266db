"""FleetLock (Zincati's reboot-coordination protocol): its wire shapes, and the node's client.

Two endpoints under a base URL, both ``POST`` with the header ``fleet-lock-protocol: true`` and the
body ``{"client_params": {"id": ..., "group": ...}}``: ``v1/pre-reboot`` takes a slot of the
group's semaphore (idempotent per id), ``v1/steady-state`` gives it back (idempotent too). Any 2xx
answer is a yes; any other answer carries ``{"kind": ..., "value": ...}`` (a machine-friendly kind,
a human explanation) — when it does not, the kind is ``generic_http_<status>`` as Zincati names it.
The hub serves the same shapes (``hubserver/fleetlock.py``), so an existing server such as airlock
can stand in for it.

The client asks once per call and says why it failed: :class:`LockRejected` (the server said no,
e.g. the semaphore is full), :class:`LockUnavailable` (no answer: down, timing out, 5xx). Waiting
and retrying is the caller's policy (the daemon's gate), not the client's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from zos_upgrade.net import RetryPolicy, TransportError, fetch
from zos_upgrade.rollout.errors import RolloutError

if TYPE_CHECKING:
    import httpx

__all__ = ["HEADER", "PRE_REBOOT", "STEADY_STATE", "ClientParams", "FleetLockClient", "FleetLockError",
           "LockError", "LockRejected", "LockRequest", "LockUnavailable"]

HEADER = "fleet-lock-protocol"
PRE_REBOOT = "v1/pre-reboot"
STEADY_STATE = "v1/steady-state"
_MAX_ANSWER = 64 * 1024  # an error body is a line of JSON
# one attempt per call, short: the gate waits and retries with its own backoff
_ONCE = RetryPolicy(attempts=1, deadline=15.0, total=20.0, min_rate=0.0)


class ClientParams(msgspec.Struct, forbid_unknown_fields=False, frozen=True):
    id: str
    group: str


class LockRequest(msgspec.Struct, forbid_unknown_fields=False, frozen=True):
    client_params: ClientParams


class LockError(msgspec.Struct, frozen=True):
    """The error body of every refusal (the protocol's ``{"kind", "value"}``)."""

    kind: str
    value: str


class FleetLockError(RolloutError):
    """A FleetLock call did not succeed."""

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class LockUnavailable(FleetLockError):
    """No answer from the lock server (connection refused, timeout, 5xx): ask again later."""


class LockRejected(FleetLockError):
    """The lock server answered no: ``kind`` / ``value`` from its error body."""

    def __init__(self, message: str, *, endpoint: str, status: int, kind: str, value: str) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status, self.kind, self.value = status, kind, value


class FleetLockClient:
    """One node's FleetLock calls against ``base_url``."""

    def __init__(self, base_url: str, node_id: str, group: str, *, client: httpx.AsyncClient | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.body = msgspec.json.encode(LockRequest(ClientParams(id=node_id, group=group)))
        if client is None:
            import httpx  # here: a node without FleetLock never loads it (issue 19)

            client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._client = client
        self._own = client is None

    async def pre_reboot(self) -> None:
        """Take a slot (idempotent for this id): returns once held, else raises."""
        await self._call(PRE_REBOOT)

    async def steady_state(self) -> None:
        """Give the slot back (idempotent: a node holding none is told yes too)."""
        await self._call(STEADY_STATE)

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()

    async def _call(self, endpoint: str) -> None:
        url = self.base_url + endpoint
        try:
            answer = await fetch(self._client, url, method="POST", max_bytes=_MAX_ANSWER,
                                 expect=tuple(range(200, 500)), content=self.body, retry=_ONCE,
                                 headers={HEADER: "true", "Content-Type": "application/json"})
        except TransportError as exc:
            raise LockUnavailable(f"lock manager {endpoint} at {url}: no answer: {exc}",
                                  endpoint=endpoint) from exc
        if answer.status == 200:
            return
        try:
            error = msgspec.json.decode(answer.body, type=LockError)
            kind, value = error.kind, error.value
        except msgspec.DecodeError:  # not the protocol's error body (a proxy's page, garbage...)
            kind, value = f"generic_http_{answer.status}", "(unknown server error)"
        raise LockRejected(f"lock manager {endpoint} rejection, code {answer.status}: {kind}: {value}",
                           endpoint=endpoint, status=answer.status, kind=kind, value=value)
