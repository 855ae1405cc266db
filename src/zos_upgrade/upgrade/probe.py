"""The start-up probe of a new upgrader program: it must prove it starts before we hand over to it.

Self-update replaces the program the supervisor runs, then exits 75 so the supervisor starts the new
one. A new program that cannot start (a broken build, a missing library, exits at once every time)
would leave nothing running to finish or roll back the transaction: the node would be stranded. So
the self step, while the OLD program still runs and the previous one is in the backup, starts the
new program once as ``<program> self-test`` with two variables in its environment:

* ``ZOS_UPGRADE_PROBE_MARKER``: a file to write, and ``ZOS_UPGRADE_PROBE``: a nonce to write in it.

The new program writes ``{"nonce": ..., "version": ..., "pid": ...}`` there (durably) once it has
loaded what the daemon runs on, and exits 0 (``zos-upgrade self-test``). No marker with the nonce
within the deadline, or a non-zero exit, fails the self step: it rolls back, which puts the previous
program back from the backup, and the release is held as failed like any rolled-back release.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zos_upgrade.fsutil import read_at_most
from zos_upgrade.upgrade.errors import ProgramProbeFailed
from zos_upgrade.upgrade.hooks import run_bounded

__all__ = ["MARKER_ENV", "NONCE_ENV", "ProgramProbe"]

log = logging.getLogger(__name__)

MARKER_ENV = "ZOS_UPGRADE_PROBE_MARKER"
NONCE_ENV = "ZOS_UPGRADE_PROBE"
_MARKER_LIMIT = 4096  # a marker is a small JSON object; anything bigger is not one


@dataclass(frozen=True)
class ProgramProbe:
    """How to probe: the arguments after the program (``self-test`` and what it needs), the deadline."""

    args: Sequence[str] = ("self-test",)
    timeout: float = 30.0

    async def __call__(self, program: Path, marker: Path) -> str:
        """Start ``program`` once; the version it reported, or ProgramProbeFailed saying why not."""
        nonce = uuid.uuid4().hex
        marker.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in (MARKER_ENV, NONCE_ENV)}
        env.update({MARKER_ENV: str(marker), NONCE_ENV: nonce})
        env.pop("ZOS_UPGRADE_CRASH_AT", None)  # a crash point is for this process, not the probe
        try:
            ran = await run_bounded([str(program), *self.args], cwd=marker.parent, env=env,
                                    timeout=self.timeout)
        except OSError as exc:
            raise ProgramProbeFailed(f"new program {program} cannot be started: {exc}") from exc
        try:
            said = f"; its output: {ran.output[-500:]}" if ran.output else ""
            if ran.timed_out:
                raise ProgramProbeFailed(f"new program {program} wrote no start-up marker within "
                                         f"{self.timeout:g}s; killed{said}")
            if ran.returncode != 0:
                raise ProgramProbeFailed(f"new program {program} exited with status {ran.returncode} "
                                         f"at start-up{said}")
            version = _read_marker(marker, nonce, program)
        finally:
            marker.unlink(missing_ok=True)
        log.info("new program started", extra={"program": str(program), "version": version})
        return version


def _read_marker(marker: Path, nonce: str, program: Path) -> str:
    """The version in this probe's marker, or ProgramProbeFailed: missing, too big, not this run's."""
    said = f"new program {program}: start-up marker {marker}"
    try:
        data = read_at_most(marker, _MARKER_LIMIT)
    except OSError as exc:
        raise ProgramProbeFailed(f"{said} cannot be read: {exc}") from exc
    if data is None:
        raise ProgramProbeFailed(f"{said} was not written (the program exited 0 without writing it)")
    if len(data) > _MARKER_LIMIT:
        raise ProgramProbeFailed(f"{said} is over {_MARKER_LIMIT} bytes")
    try:
        found = json.loads(data)
    except ValueError as exc:
        raise ProgramProbeFailed(f"{said} is not JSON: {exc}") from exc
    ok = isinstance(found, dict) and found.get("nonce") == nonce and isinstance(found.get("version"), str)
    if not ok:
        raise ProgramProbeFailed(f"{said} is not this probe's (expected an object with this run's nonce "
                                 "and a version)")
    return str(found["version"])
