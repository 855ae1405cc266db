"""The hub's HTTP/1.1 connections: uvicorn's h11 protocol with the limits it lacks.

uvicorn (0.5x, h11) holds a connection that sends nothing forever, gives a request head no deadline,
checks a head's size only while it is incomplete (a 45 KB head arriving in one read is accepted),
does not count header fields, and its ``limit_concurrency`` answers 503 only once a request head has
arrived -- so slow clients hold connections as long as they like. None of that can be fixed in the
ASGI app, which only sees complete requests; this protocol class, handed to uvicorn as ``http=``,
adds per connection:

- a deadline for each request head, from its first byte (from the connection's start for the
  first): a head still incomplete then gets ``408`` and the connection is closed, so a client that
  trickles header lines or sends nothing is cut off, and a fast one never notices;
- limits on the head's size (complete or not) and on its header count: ``431`` and close;
- a limit on open connections: one past it gets ``503`` and is closed at once, before anything is
  read, so a flood is refused quickly instead of queueing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

__all__ = ["ConnectionLimits", "guarded_protocol"]

log = logging.getLogger(__name__)

# how long a refused client may go on sending (read and dropped) after the answer: closing on unread
# bytes sends a reset, which makes the client's kernel drop the answer before the client reads it
_LINGER = 1.0
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float  # seconds a request head may take to arrive, from its first byte
    max_headers: int  # header fields in one request
    max_header_bytes: int  # bytes of a request head (request line and fields)
    max_connections: int  # open connections; one more is refused with 503


def _head_problem(event: h11.Request, limits: ConnectionLimits) -> str | None:
    if len(event.headers) > limits.max_headers:
        return f"request has {len(event.headers)} header fields, more than the {limits.max_headers} allowed"
    size = len(event.method) + len(event.target) + 12 + sum(len(n) + len(v) + 4 for n, v in event.headers)
    if size > limits.max_header_bytes:
        return f"request head of about {size} bytes is over the {limits.max_header_bytes} bytes allowed"
    return None


class _CheckedConnection(h11.Connection):
    """h11's server side, refusing a complete head that is too large or has too many fields; keeps
    the last refusal so the protocol can answer it with its own status and reason."""

    def __init__(self, limits: ConnectionLimits) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._limits = limits
        self.refusal: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
            if isinstance(event, h11.Request):
                problem = _head_problem(event, self._limits)
                if problem is not None:
                    raise h11.RemoteProtocolError(problem, 431)
        except h11.RemoteProtocolError as exc:
            self.refusal = exc
            raise
        return event


class _GuardedH11Protocol(H11Protocol):
    limits: ClassVar[ConnectionLimits]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn: _CheckedConnection = _CheckedConnection(self.limits)
        self._head_timer: asyncio.TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("connection refused: too many open", extra={"client": self.client,
                                                                    "limit": self.limits.max_connections})
            # closed at once, no lingering: a flood must not hold slots
            self._close_with(503, f"more than {self.limits.max_connections} open connections; retry later",
                             linger=False)
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # refused: what the client still sends is dropped until the linger ends
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # the next request on a kept-alive connection: its head's clock starts
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        refusal = self.conn.refusal
        status = refusal.error_status_hint if refusal is not None else 400
        reason = str(refusal) if refusal is not None else msg
        log.warning("request refused", extra={"client": self.client, "status": status, "reason": reason})
        self._close_with(status, reason)

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.warning("request head too slow, connection closed",
                        extra={"client": self.client, "timeout": self.limits.header_timeout})
            self._close_with(408, f"request head not complete within {self.limits.header_timeout:g}s")

    def _close_with(self, status: int, message: str, *, linger: bool = True) -> None:
        """Answer outside h11's state machine (no request may have been parsed) and close: at once, or
        (``linger``) after our FIN and a short wait, dropping what the client still sends."""
        self._disarm_head_timer()
        body = message.encode("ascii", "replace") + b"\n"
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n" % (status, _REASONS.get(status, b"Bad Request"), len(body)))
        self.transport.write(head + body)
        if linger and self.transport.can_write_eof():
            self._lingering = True
            self.transport.write_eof()
            self.loop.call_later(_LINGER, self.transport.close)
        else:
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """The protocol class uvicorn is given as ``http=``: uvicorn builds it with its own arguments, so
    the limits travel as a class attribute of a class made for them."""
    return type("GuardedH11Protocol", (_GuardedH11Protocol,), {"limits": limits})
