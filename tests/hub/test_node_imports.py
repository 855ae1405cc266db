"""What a node loads: the hub client and the whole command line, but never the hub server or Starlette."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_node_side_loads_no_server() -> None:
    # a fresh interpreter: this test process has long imported the server for other tests
    probe = (
        "import json, sys, zos_upgrade.hub, zos_upgrade.cli; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('starlette', 'uvicorn') or m.startswith('zos_upgrade.hubserver'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
    # and the probe sees a server module when one is loaded, so an empty answer means something
    loaded = subprocess.run(
        [sys.executable, "-c", probe.replace("zos_upgrade.cli;", "zos_upgrade.cli, zos_upgrade.hubserver;")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "zos_upgrade.hubserver" in json.loads(loaded) and "starlette" in json.loads(loaded)
