"""A node upgrades from an exported hub served by a plain static file server (``python -m
http.server``, a child process): first install, then an upgrade after a re-export (``--replace``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.e2e.upgrading import install
from tests.support.node import Sandbox, leftovers, service_release
from tests.support.procs import free_port, serving, zos_upgrade_cmd
from tests.support.supervisord import RunningSupervisord


def _export(box: Sandbox, dest: Path, *extra: str) -> str:
    run = subprocess.run(
        zos_upgrade_cmd("hub", "export", str(dest), "--root", str(box.hub_root), "--blocks", str(box.blocks),
                        *extra),
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_a_node_upgrades_from_an_export_on_a_static_server(tmp_path: Path, sd: RunningSupervisord) -> None:
    box = Sandbox(tmp_path / "sandbox")
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0", extra={"opt/app/old.txt": "old"}))
    box.link("zos:latest.fl", "zos:1.0.0.fl")
    site = tmp_path / "site"
    out = _export(box, site)
    assert "blocks" in out and (site / "blocks").is_dir()

    port = free_port()
    static = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    with serving(static, port):
        box.hub_url = f"http://127.0.0.1:{port}"
        first = asyncio.run(install(box, sd, "tf-zos/zos:latest.fl"))
        assert first.to_version == "1.0.0"  # type: ignore[attr-defined]
        assert box.wait_version("alpha", "1.0.0") == "1.0.0"
        assert (box.root / "opt/app/old.txt").read_text() == "old"

        # a new release, exported again over the served tree: the same server now serves it
        box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", extra={"opt/app/new.txt": "new"}))
        box.link("zos:latest.fl", "zos:1.1.0.fl")
        _export(box, site, "--replace")
        report = asyncio.run(install(box, sd, "tf-zos/zos:latest.fl"))
        assert report.from_version == "1.0.0" and report.to_version == "1.1.0"  # type: ignore[attr-defined]
        assert box.wait_version("alpha", "1.1.0") == "1.1.0"
        assert (box.root / "opt/app/new.txt").read_text() == "new"
        assert not (box.root / "opt/app/old.txt").exists()
        assert leftovers(box) == []
    assert not list(tmp_path.glob(".site.*")), "a partial or old export was left behind"
