"""The hub's online keys (issue 15, a deployment choice): re-sign what is due without a person.

The hub config names a folder holding, per repository, the private keys the hub may use online:
``<online_keys>/<repo>/timestamp.<keyid>.pem`` and optionally ``snapshot.<keyid>.pem``. A task in
the app's lifespan calls :meth:`OnlineSigner.resign_due` every ``online_resign_seconds``:

- a timestamp that expires within its renewal window (or has expired) is re-signed, so nodes
  never see a stale timestamp while the hub is up;
- with the snapshot key online too, a targets file uploaded without its snapshot and timestamp
  gets them (the release engineer then uploads only what the offline targets key signs).

The trade-off (docs/releasing.md): a hub whose online keys leak can at worst keep nodes on the
snapshot it holds until that snapshot expires (a freeze), never make them install anything, since
the targets key stays offline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.hub.models import InvalidName
from zos_upgrade.hub.names import validate_name
from zos_upgrade.hubserver.tuf_store import TufStore
from zos_upgrade.trust.keys import KeyStore
from zos_upgrade.trust.layout import DEFAULT_EXPIRY
from zos_upgrade.trust.repository import TrustRepository, utcnow

__all__ = ["OnlineSigner"]

log = logging.getLogger(__name__)


class OnlineSigner:
    """Re-signs the due timestamps (and pending snapshots) of the repositories it holds keys for."""

    def __init__(
        self,
        store: TufStore,
        keys_root: Path,
        *,
        now: Callable[[], datetime] = utcnow,
        timestamp_expiry: timedelta = DEFAULT_EXPIRY["timestamp"],
        snapshot_expiry: timedelta = DEFAULT_EXPIRY["snapshot"],
    ) -> None:
        self.store = store
        self.keys_root = keys_root
        self._now = now
        self._expiry = {"timestamp": timestamp_expiry, "snapshot": snapshot_expiry}

    def _repos(self) -> list[str]:
        names = []
        if self.keys_root.is_dir():
            for path in sorted(self.keys_root.iterdir()):
                try:
                    names.append(validate_name(path.name, "repository"))
                except InvalidName:
                    continue
        return names

    def resign_due(self) -> dict[str, str]:
        """One pass over every repository with online keys; returns ``{repo: what was signed}``."""
        done: dict[str, str] = {}
        for repo in self._repos():
            folder = self.store.metadata_dir(repo)
            if not (folder / "timestamp.json").is_file():
                continue
            try:
                with self.store.lock(repo):
                    trusted = TrustRepository(
                        folder, KeyStore.from_env(self.keys_root / repo), now=self._now, expiry=self._expiry
                    )
                    pending = trusted.latest_targets_file()
                    snapshot_here = any(
                        trusted.keys.has(k) for k in trusted.root.signed.roles["snapshot"].keyids
                    )
                    if pending is not None and snapshot_here:
                        done[repo] = trusted.snapshot_targets(pending).describe()
                        continue
                    state = {s.role: s.state for s in trusted.status()}
                    if snapshot_here and state["snapshot"] != "ok":
                        done[repo] = trusted.renew("snapshot").describe()
                    elif state["timestamp"] != "ok":
                        done[repo] = trusted.timestamp_only().describe()
            except ZosUpgradeError as exc:
                log.warning("online re-signing failed", extra={"repo": repo, "error": str(exc)})
                continue
            if repo in done:
                log.info("online keys re-signed", extra={"repo": repo, "signed": done[repo]})
        return done
