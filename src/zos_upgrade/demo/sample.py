"""The sample node's releases: the trees the demo packs for 1.0.0, 1.1.0 and the broken 1.2.0.

Every release holds the two services (``web``, ``worker``), their zinit service files, a version
file and a 2 MiB asset that never changes (so the upgrade's block reuse is visible). From 1.0.0 to
1.1.0: ``web`` changes (reads its settings as JSON), ``NEWS`` is added, ``legacy.txt`` removed, and a
``migrate`` hook converts the settings. 1.2.0 changes ``worker`` so that it dies at start.
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["SERVICES", "SampleNode", "build_release"]

SERVICES = ("web", "worker")
ASSET_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class SampleNode:
    """Where the node lives on this machine (the services' commands embed it) and web's port."""

    root: Path
    web_port: int
    python: str = sys.executable


def _source(name: str) -> str:
    return resources.files("zos_upgrade.demo.node").joinpath(name).read_text()


def _service_file(node: SampleNode, name: str) -> str:
    # zinit's YAML keys; the supervisord back-end renders the same config as a [program:x] section
    doc = {
        "exec": f"{node.python} -u {node.root}/opt/demo/{name}.py",
        "env": {"DEMO_ROOT": str(node.root), "DEMO_PORT": str(node.web_port)},
        "log": "ring",
    }
    return json.dumps(doc, indent=2) + "\n"  # JSON is valid YAML


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    os.chmod(path, mode)


def build_release(dest: Path, version: str, node: SampleNode) -> Path:
    """Write the tree of release ``version`` (1.0.0, 1.1.0 or 1.2.0) under ``dest``."""
    if version not in ("1.0.0", "1.1.0", "1.2.0"):
        raise ValueError(f"the sample node has releases 1.0.0, 1.1.0 and 1.2.0, not {version!r}")
    migrated = version != "1.0.0"
    _write(dest / "opt/demo/VERSION", version + "\n")
    web = _source("web.py")
    if migrated:
        web = web.replace('SETTINGS_FORMAT = "conf"', 'SETTINGS_FORMAT = "json"')
    _write(dest / "opt/demo/web.py", web, 0o755)
    worker = _source("worker.py")
    if version == "1.2.0":
        worker = worker.replace("BROKEN = False", "BROKEN = True")
    _write(dest / "opt/demo/worker.py", worker, 0o755)
    _write(dest / "opt/demo/assets.bin", random.Random(7).randbytes(ASSET_BYTES))
    if migrated:
        _write(dest / "opt/demo/NEWS", "1.1.0: settings are JSON now\n")
        hook = _source("migrate.py")
        hook = hook.replace("#!/usr/bin/env python3", f"#!{node.python}", 1)
        _write(dest / "migrate", hook, 0o755)
    else:
        _write(dest / "opt/demo/legacy.txt", "only in 1.0.0\n")
    for name in SERVICES:
        _write(dest / f"etc/zinit/{name}.yaml", _service_file(node, name))
    return dest
