"""What the node last saw of one TUF repository, for ``zos-upgrade status``: roles, refreshes, errors.

``TrustedRepo`` writes it after every refresh (``<state_dir>/trust/<repo>.status.json``, beside the
ngclient cache folder); ``status`` reads it without touching the network or the cache. A freeze is
recorded with the role and its expiry, so status can say "metadata expired since <time>".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zos_upgrade import fsutil

__all__ = ["TrustStatus", "load_status", "save_status"]

MAX_STATUS_BYTES = 64 * 1024


@dataclass(frozen=True)
class TrustStatus:
    repo: str
    metadata_url: str
    last_refresh: str | None = None       # ISO times (UTC), by the client's clock
    last_success: str | None = None
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> {version, expires}
    error: dict[str, Any] | None = None   # the last refresh's typed error: type, attack, message, at...

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def save_status(path: Path, status: TrustStatus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write_json(path, status.to_json(), indent=2)


def load_status(path: Path) -> TrustStatus | None:
    """The recorded status, or None when there is none or it is unreadable (a report, not a state)."""
    try:
        data = fsutil.read_at_most(path, MAX_STATUS_BYTES)
        doc = json.loads(data) if data is not None else None
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("repo"), str):
        return None
    roles = doc.get("roles") if isinstance(doc.get("roles"), dict) else {}
    error = doc.get("error") if isinstance(doc.get("error"), dict) else None
    return TrustStatus(repo=doc["repo"], metadata_url=str(doc.get("metadata_url", "")),
                       last_refresh=_text(doc.get("last_refresh")),
                       last_success=_text(doc.get("last_success")),
                       roles=roles or {}, error=error)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
