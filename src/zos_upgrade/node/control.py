"""What an operator told this node's daemon: ``<state_dir>/control.json`` (hold and pause).

``zos-upgrade hold [VERSION]`` pins the node's release: the daemon applies no boot release above
VERSION (bins packages, which carry their own versions, still follow their repository).
``zos-upgrade pause`` stops every automatic transaction (boot and bins); ``resume`` and ``unhold``
undo them. The daemon reads this file before each transaction (:mod:`zos_upgrade.daemon.control`),
so a running daemon honours a change at its next round without a restart; ``zos-upgrade status``
shows it.

The file is tiny and written durably (``fsutil.atomic_write_json``). A file that exists but cannot
be read is an error, never "no hold": the daemon then applies nothing until it is fixed, because
moving a node its operator pinned is the fault this file exists to prevent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import atomic_write_json
from zos_upgrade.node.documents import read_document
from zos_upgrade.versions import InvalidVersion, Version, parse_version

__all__ = ["CONTROL_FILE", "ControlError", "ControlState", "Hold", "NodeControl", "Pause"]

CONTROL_FILE = "control.json"
_MAX_BYTES = 64 * 1024
_FORMAT = 1


class ControlError(ZosUpgradeError):
    """``control.json`` exists but is unreadable, too large, or not a control document."""


class Hold(msgspec.Struct, kw_only=True, frozen=True):
    version: str  # semver text: no boot release above it is applied
    at: float     # unix time the hold was set


class Pause(msgspec.Struct, kw_only=True, frozen=True):
    at: float  # unix time the pause was set


class ControlState(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """The whole document; unknown fields are kept readable so an older daemon reads a newer file."""

    format: int = _FORMAT
    hold: Hold | None = None
    pause: Pause | None = None

    def hold_version(self) -> Version | None:
        return None if self.hold is None else parse_version(self.hold.version)


class NodeControl:
    """The control file of one state directory; every change is durable before it returns."""

    def __init__(self, state_dir: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / CONTROL_FILE
        self._clock = clock

    def load(self) -> ControlState:
        """What is set; an empty state when the file does not exist."""
        hint = "; remove it, then set hold/pause again"
        state = read_document(self.path, ControlState, limit=_MAX_BYTES, expected="a small JSON object",
                              what="a control document", error=ControlError, hint=hint)
        if state is None:
            return ControlState()
        try:
            state.hold_version()  # a hold on a version that is not semver is no hold we can honour
        except InvalidVersion as exc:
            raise ControlError(f"{self.path} is not a control document ({exc}){hint}") from exc
        return state

    def set_hold(self, version: Version) -> ControlState:
        """Pin the node at ``version``; each method returns the state before its change."""
        return self._update(lambda s: msgspec.structs.replace(s, hold=Hold(version=str(version),
                                                                            at=self._clock())))

    def clear_hold(self) -> ControlState:
        return self._update(lambda s: msgspec.structs.replace(s, hold=None))

    def set_pause(self) -> ControlState:
        # pausing twice keeps the first time: "paused since"
        return self._update(lambda s: msgspec.structs.replace(s, pause=s.pause or Pause(at=self._clock())))

    def clear_pause(self) -> ControlState:
        return self._update(lambda s: msgspec.structs.replace(s, pause=None))

    def _update(self, change: Callable[[ControlState], ControlState]) -> ControlState:
        """Apply ``change``; write only when it changed something (a no-op leaves the file alone)."""
        before = self.load()
        after = change(before)
        if after != before:
            self._save(after)
        return before

    def _save(self, state: ControlState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, msgspec.to_builtins(state), indent=2)
