"""The daemon's TUF repository between transactions: python-tuf runs in a short-lived child process,
and a poll where nothing changed is a conditional GET (issue 19: an idle daemon's memory).

python-tuf, securesystemslib, cryptography and httpx stay resident once imported (about 40 MiB). An
:class:`IsolatedTrust` never imports them in the daemon: a full refresh is ngclient's own
(:class:`~zos_upgrade.trust.client.TrustedRepo`), run in a forked child that writes the cache and
the status file as always and sends back what it verified (a :class:`~zos_upgrade.trust.view.TrustView`)
or its typed error, which the daemon raises as if it had refreshed itself.

No verification happens here: the lean poll only decides whether the last verified view still
holds, and every doubt means a full refresh. The view holds when ALL of these do:

- the last full refresh succeeded in this process, less than ``full_every`` ago;
- no trusted role expires within ``margin`` (so a freeze is reported by ngclient itself, at the
  first round after the expiry at the latest: "metadata expired since ...");
- ``<N+1>.root.json`` answers 404 (ngclient's own root-rotation probe; anything else: refresh);
- ``timestamp.json`` answers 304 to the ETag of the bytes ngclient verified and cached, or 200 with
  exactly those bytes. Any other answer or failure: refresh (which reports it typed).

A transaction needs the full stack in the daemon (the download is checked by ngclient):
:meth:`IsolatedTrust.full` loads it, and from then on it serves every call in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from zos_upgrade.trust import errors
from zos_upgrade.trust.errors import FreezeAttack, MetadataUnavailable, TrustError
from zos_upgrade.trust.nodestate import TrustStatus, load_status, save_status
from zos_upgrade.trust.view import TargetLike, TrustView

if TYPE_CHECKING:
    from zos_upgrade.trust.client import TrustedRepo

__all__ = ["IsolatedTrust"]

log = logging.getLogger(__name__)

MAX_TIMESTAMP_BYTES = 16384  # ngclient's own cap for timestamp.json
MAX_ANSWER_BYTES = 256 * 1024 * 1024  # what a refresh child may send back (a view of many targets)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IsolatedTrust:
    """One TUF repository as the daemon sees it: ``make_full`` builds its real TrustedRepo (in the
    refresh child, or here once a transaction needs it); ``metadata_dir`` is that repo's cache."""

    def __init__(self, make_full: Callable[[], TrustedRepo], *, name: str, metadata_url: str,
                 metadata_dir: Path, status_file: Path, clock: Callable[[], datetime] = _utcnow,
                 margin: timedelta = timedelta(hours=1), full_every: timedelta = timedelta(hours=1),
                 child_timeout: float = 900.0, poll_timeout: float = 10.0) -> None:
        self._make_full = make_full
        self.name = name
        self.metadata_url = metadata_url
        self.metadata_dir = Path(metadata_dir)
        self.status_file = Path(status_file)
        self.clock = clock
        self.margin = margin
        self.full_every = full_every
        self.child_timeout = child_timeout
        self.poll_timeout = poll_timeout
        self._full: TrustedRepo | None = None
        self._view: TrustView | None = None
        self._verified_at: datetime | None = None
        self._etag: str | None = None
        self.children = 0  # full refreshes run in a child (tests and the benchmark read it)

    # -- refresh ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Make sure what the node trusts is current, or raise the typed error ngclient raised."""
        if self._full is not None:  # a transaction loaded python-tuf here: it refreshes itself
            self._full.refresh()
            return
        at = self.clock()
        if self._view is not None and self._still_holds(at):
            self._record_poll(at)
            return
        self._view = self._etag = None
        self._view = self._refresh_in_child()
        self._verified_at = at

    def _still_holds(self, at: datetime) -> bool:
        assert self._view is not None
        expiry = self._view.earliest_expiry()
        if expiry is None or at + self.margin >= expiry:
            return False
        if self._verified_at is None or at - self._verified_at >= self.full_every:
            return False
        try:  # the refresh runs in a worker thread: the poll gets an event loop of its own
            return asyncio.run(self._unchanged(self._view.versions().get("root", 0)))
        except Exception as exc:  # any doubt: the full refresh decides, and reports what went wrong
            log.debug("lean TUF poll inconclusive; full refresh",
                      extra={"repo": self.name, "error": str(exc)})
            return False

    async def _unchanged(self, root_version: int) -> bool:
        from zos_upgrade.leanhttp import LeanClient
        from zos_upgrade.net import RetryPolicy, fetch

        base = self.metadata_url if self.metadata_url.endswith("/") else self.metadata_url + "/"
        once = RetryPolicy(attempts=1, deadline=self.poll_timeout, total=self.poll_timeout)
        async with LeanClient(timeout=self.poll_timeout) as client:
            # ngclient's probe for a new root: only "not found" means there is none
            await fetch(client, f"{base}{root_version + 1}.root.json", max_bytes=MAX_TIMESTAMP_BYTES,
                        expect=(404,), retry=once)
            headers = {"If-None-Match": self._etag} if self._etag else None
            answer = await fetch(client, f"{base}timestamp.json", max_bytes=MAX_TIMESTAMP_BYTES,
                                 expect=(200, 304), headers=headers, retry=once)
        if answer.status == 304:
            return self._etag is not None
        if answer.body != (self.metadata_dir / "timestamp.json").read_bytes():
            return False
        self._etag = answer.etag
        return True

    def _record_poll(self, at: datetime) -> None:
        """``status`` shows the poll as a refresh: the node checked, and what it trusts is current."""
        previous = load_status(self.status_file)
        if previous is None:
            return
        status: TrustStatus = dataclasses.replace(previous, last_refresh=at.isoformat(),
                                                  last_success=at.isoformat(), error=None)
        with contextlib.suppress(OSError):  # a report: a full disk must not fail a good poll
            save_status(self.status_file, status)

    # -- the child ------------------------------------------------------------------------------
    def _refresh_in_child(self) -> TrustView:
        self.children += 1
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:  # no process left to fork (EAGAIN, ENOMEM): retried next round
            os.close(read_end)
            os.close(write_end)
            raise MetadataUnavailable(f"{self.name}: cannot start the metadata refresh: {exc}") from exc
        if pid == 0:  # pragma: no cover  # the child: coverage does not follow os._exit
            os.close(read_end)
            _child(self._make_full, write_end)
        os.close(write_end)
        try:
            data = _read_all(read_end, self.child_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            raise MetadataUnavailable(f"{self.name}: metadata refresh did not end within "
                                      f"{self.child_timeout:g}s") from None
        finally:
            os.close(read_end)
            os.waitpid(pid, 0)
        try:
            answer = json.loads(data)
            if "view" in answer:
                return TrustView.from_json(answer["view"])
            raise _error_of(self.name, answer["error"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TrustError(f"{self.name}: metadata refresh ended without an answer "
                             f"({type(exc).__name__}: {exc})") from None

    # -- what the node trusts -------------------------------------------------------------------
    def full(self) -> TrustedRepo:
        """The in-process TrustedRepo (python-tuf loads now): a transaction downloads through it,
        and it serves every later call of this process."""
        if self._full is None:
            self._full = self._make_full()
            self._view = None
        return self._full

    def _current(self) -> TrustView | TrustedRepo:
        if self._full is not None:
            return self._full
        if self._view is None:
            raise TrustError(f"{self.name}: refresh() must succeed before targets are read")
        return self._view

    def target(self, path: str) -> TargetLike:
        return self._current().target(path)

    def resolve_link(self, name: str) -> TargetLike:
        return self._current().resolve_link(name)

    def releases(self) -> list[TargetLike]:
        return [*self._current().releases()]

    def versions(self) -> dict[str, int]:
        current = self._full or self._view
        return current.versions() if current is not None else {}

    def status(self) -> TrustStatus | None:
        return load_status(self.status_file)

    def close(self) -> None:
        if self._full is not None:
            self._full.close()


def _child(make_full: Callable[[], TrustedRepo], out: int) -> NoReturn:
    """Refresh with ngclient, send the view or the error on ``out``, exit (never returns)."""
    code = 1
    try:
        # the daemon's signal handlers (asyncio's wakeup fd) are the parent's: a signal ends the child
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        repo = make_full()
        try:
            repo.refresh()
            answer: dict[str, Any] = {"view": repo.view().to_json()}
            code = 0
        except TrustError as exc:
            answer = {"error": _error_doc(exc)}
        finally:
            repo.close()
    except BaseException as exc:  # a bug or a broken cache: the daemon reports it, typed
        answer = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    try:
        data = json.dumps(answer).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]
    finally:
        os._exit(code)


def _read_all(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        piece = os.read(fd, 1 << 20)
        if not piece:
            return b"".join(chunks)
        size += len(piece)
        if size > MAX_ANSWER_BYTES:
            raise ValueError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        chunks.append(piece)


def _error_doc(exc: TrustError) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, FreezeAttack):
        doc["role"] = exc.role
        doc["expires"] = exc.expires.isoformat() if exc.expires else None
    return doc


def _error_of(name: str, doc: dict[str, Any]) -> TrustError:
    """The child's error as the same typed error (a type not of :mod:`trust.errors`: a TrustError)."""
    kind, message = str(doc.get("type", "")), str(doc.get("message", ""))
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, FreezeAttack):
        expires = doc.get("expires")
        return cls(message, role=str(doc.get("role", "")),
                   expires=datetime.fromisoformat(expires) if isinstance(expires, str) else None)
    if isinstance(cls, type) and issubclass(cls, TrustError):
        return cls(message)
    return TrustError(f"{name}: metadata refresh failed: {kind}: {message}")
