"""The report of a TUF repository's roles: version, expiry, keys, threshold and what is due.

Pure: it reads the trusted metadata objects and a time, and says for each role whether it is
``ok``, ``due`` (it expires within its renewal window: re-sign it now) or ``expired`` (nodes refuse
it since ``expires``). ``trust status`` prints it; the hub's online-key task uses ``due``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from tuf.api.metadata import Root, Signed

from zos_upgrade.trust.layout import RENEWAL_WINDOW, TOP_LEVEL_ROLES

__all__ = ["RoleStatus", "role_report"]

State = Literal["ok", "due", "expired"]


@dataclass(frozen=True)
class RoleStatus:
    """One role of one repository, as ``trust status`` shows it."""

    role: str
    version: int
    expires: datetime
    threshold: int
    keyids: tuple[str, ...]
    keys_here: int  # how many of the role's private keys the keys folder holds
    state: State

    @property
    def signable(self) -> bool:
        """The keys folder holds enough keys to re-sign this role."""
        return self.keys_here >= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "version": self.version,
            "expires": self.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "state": self.state,
            "threshold": self.threshold,
            "keyids": list(self.keyids),
            "keys_here": self.keys_here,
            "signable": self.signable,
        }


def state_of(signed: Signed, now: datetime, window: timedelta) -> State:
    if signed.is_expired(now):
        return "expired"
    if signed.expires - now <= window:
        return "due"
    return "ok"


def role_report(
    root: Root,
    signed: Mapping[str, Signed],
    now: datetime,
    keys_here: Mapping[str, int],
    windows: Mapping[str, timedelta] = RENEWAL_WINDOW,
) -> list[RoleStatus]:
    """The status of every top-level role, root first."""
    report = []
    for role in TOP_LEVEL_ROLES:
        meta = signed[role]
        delegation = root.roles[role]
        report.append(
            RoleStatus(
                role=role,
                version=meta.version,
                expires=meta.expires,
                threshold=delegation.threshold,
                keyids=tuple(delegation.keyids),
                keys_here=keys_here.get(role, 0),
                state=state_of(meta, now, windows[role]),
            )
        )
    return report
