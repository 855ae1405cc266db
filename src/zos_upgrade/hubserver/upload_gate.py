"""How many upload checks run at once: a few over the whole hub, fewer per repository.

An upload's check parses a database someone else wrote and stats its blocks: seconds of work in a
thread. Run on the shared thread pool, a flood of uploads from one token holder took every thread,
and every later request to any repository waited behind them. Checks here run on threads of their
own (never the pool the read API uses), at most ``total`` at once and ``per_repo`` for one
repository; an upload that cannot get a slot within ``wait_seconds`` is answered 503 (clients retry).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from zos_upgrade.hub.models import HubError

__all__ = ["UploadBusy", "UploadGate"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class UploadBusy(HubError):
    """No upload check slot came free in time: HTTP 503."""


class UploadGate:
    def __init__(self, total: int, per_repo: int, wait_seconds: float) -> None:
        self.total, self.per_repo, self.wait_seconds = total, per_repo, wait_seconds
        # made on first use: anyio primitives belong to the running event loop
        self._all: anyio.Semaphore | None = None
        self._threads: anyio.CapacityLimiter | None = None
        self._repos: dict[str, anyio.Semaphore] = {}  # one per token's repository: a bounded set

    async def run(self, repo: str, check: Callable[[], T]) -> T:
        """Run ``check`` in a worker thread once a slot of ``repo`` and one of the hub are free."""
        if self._all is None or self._threads is None:
            self._all, self._threads = anyio.Semaphore(self.total), anyio.CapacityLimiter(self.total)
        mine = self._repos.setdefault(repo, anyio.Semaphore(self.per_repo))
        acquired: list[anyio.Semaphore] = []
        try:
            with anyio.move_on_after(self.wait_seconds):
                for semaphore in (mine, self._all):
                    await semaphore.acquire()
                    acquired.append(semaphore)
            if len(acquired) < 2:
                log.warning("upload refused: checks busy", extra={"repo": repo})
                raise UploadBusy(
                    f"repository {repo!r}: {self.per_repo} upload check(s) of this repository or "
                    f"{self.total} of the hub already running for {self.wait_seconds:g} s; retry later"
                )
            # not cancellable: the slots stay taken until the thread really ends (the check's own
            # deadline bounds it), so the number of running checks never exceeds the bound
            return await anyio.to_thread.run_sync(check, limiter=self._threads)
        finally:
            for semaphore in reversed(acquired):
                semaphore.release()
