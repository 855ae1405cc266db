"""ManifestStore.keep_previous: the replaced manifest is kept once, however often roll-forward runs."""

from __future__ import annotations

from pathlib import Path

import msgspec

from zos_upgrade.upgrade.manifest import Manifest, ManifestStore


def manifest(version: str) -> Manifest:
    return Manifest(kind="boot", fqdn="tf/zos:latest.fl", source="tf/zos:" + version, version=version,
                    md5="0" * 32, info={}, files={}, services={}, installed=1.0)


def test_kept_before_the_rename_and_not_overwritten_when_roll_forward_runs_again(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    store.keep_previous("boot", b"{}")  # nothing installed: nothing to keep
    assert store.load_previous("boot") is None
    store.save("boot", manifest("1.0.0"))
    new = msgspec.json.encode(manifest("1.1.0"))
    store.keep_previous("boot", new)
    store.save_text("boot", new)
    store.keep_previous("boot", new)  # a crash after the rename: roll-forward runs again
    previous = store.load_previous("boot")
    assert previous is not None and previous.version == "1.0.0"
    assert store.path_for("boot", previous=True) == tmp_path / "manifests/previous/boot.json"
    assert store.path_for("a/b", previous=True).parent == tmp_path / "manifests/previous/bins"
    assert "a/b" not in store.bins()  # previous manifests are never read as installed ones
