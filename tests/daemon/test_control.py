"""The operator's control file as the policies' gate (issue 18 item 4): what hold and pause block.

The real ControlGate over a real control.json; tests/e2e/test_hold.py runs it in a running daemon.
"""

from __future__ import annotations

from pathlib import Path

from zos_upgrade.daemon.control import ControlGate
from zos_upgrade.node.control import NodeControl
from zos_upgrade.versions import parse_version


def test_hold_blocks_only_boot_releases_above_it_and_pause_blocks_everything(tmp_path: Path) -> None:
    store = NodeControl(tmp_path, clock=lambda: 100.0)
    gate = ControlGate(store)
    assert gate.blocked("boot upgrade 1.1.0", to_version="1.1.0", at=1, version="1.0.0") is None
    store.set_hold(parse_version("1.1.0"))
    assert gate.blocked("boot upgrade 1.1.0", to_version="1.1.0", at=1, version="1.0.0") is None
    assert gate.blocked("boot upgrade 1.1.0-rc.1", to_version="1.1.0-rc.1", at=1, version="1.0.0") is None
    above = gate.blocked("boot upgrade 1.1.1", to_version="1.1.1", at=1, version="1.0.0")
    assert above is not None and above.result == "held" and not above.applied
    assert "held at 1.1.0" in above.detail and "zos-upgrade unhold" in above.detail
    assert gate.blocked("install tf-zos-bins/tool:2.0.fl", to_version=None, at=1, version="1.0.0") is None

    store.set_pause()
    for what, to in (("install tf-zos-bins/tool:2.0.fl", None), ("uninstall tf-zos-bins/old.fl", None),
                     ("boot upgrade 1.0.1", "1.0.1")):
        paused = gate.blocked(what, to_version=to, at=1, version="1.0.0")
        assert paused is not None and paused.result == "paused" and what in paused.detail
    assert store.load().pause is not None and store.load().pause.at == 100.0  # type: ignore[union-attr]
    store.clear_pause()
    store.clear_hold()
    assert gate.blocked("boot upgrade 9.0.0", to_version="9.0.0", at=1, version="1.0.0") is None


def test_a_damaged_control_file_blocks_everything_naming_the_file(tmp_path: Path) -> None:
    for text in ("{", '{"pause": 3}', '{"hold": {"version": "latest", "at": 1}}', "x" * 70000):
        (tmp_path / "control.json").write_text(text)
        gate = ControlGate(NodeControl(tmp_path))
        blocked = gate.blocked("install x", to_version=None, at=1, version="1.0.0")
        assert blocked is not None and blocked.result == "error", text[:20]
        assert str(tmp_path / "control.json") in blocked.detail
