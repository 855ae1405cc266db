"""Named crash points: the places the transaction can be killed on purpose, to prove recovery works.

``ZOS_UPGRADE_CRASH_AT=<point>`` makes the process SIGKILL itself when it reaches that point, so the
crash is as abrupt as a power cut (no ``finally``, no ``atexit``). The proof suite crashes an upgrade
at every point and checks that a fresh process converges to exactly the old or exactly the new release.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

__all__ = ["CRASH_ENV", "CRASH_POINTS", "ROLLBACK_CRASH_POINTS", "crash_point"]

CRASH_ENV = "ZOS_UPGRADE_CRASH_AT"

# In transaction order (SPEC 11); each is reached by every upgrade that changes files and services.
# "after-self-update" is reached only when the release carries a new copy of the upgrader itself.
CRASH_POINTS: tuple[str, ...] = (
    "after-fetch",         # staged tree complete; no journal yet
    "after-plan",          # journal written (phase planned); node untouched
    "after-self-update",   # new program installed, journal says so, RestartNeeded not raised yet
    "after-pre-copy",      # pre-copy hook ran
    "after-stop",          # affected services stopped
    "after-backup",        # every file to replace/remove hard-linked into the backup
    "mid-apply",           # half of the files are in place
    "after-apply",         # every file in place, post-copy ran
    "after-migrate",       # migrate hook ran
    "after-restart",       # services of the new release restarted
    "after-probation",     # probation passed, post-start ran; not committed yet
    "after-manifest",      # COMMIT POINT passed: new manifest renamed in place
    "after-boot-files",    # boot files written; backup and journal not yet dropped
)

# Reached only while undoing a failed transaction (to prove rollback itself is idempotent).
ROLLBACK_CRASH_POINTS: tuple[str, ...] = ("mid-rollback",)

_KNOWN = frozenset(CRASH_POINTS + ROLLBACK_CRASH_POINTS)


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``ZOS_UPGRADE_CRASH_AT`` names this point; else do nothing."""
    if name not in _KNOWN:
        raise ValueError(f"unknown crash point {name!r}; expected one of {', '.join(sorted(_KNOWN))}")
    if os.environ.get(CRASH_ENV) != name:
        return
    logging.getLogger(__name__).warning("crashing on purpose", extra={"crash_point": name})
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
