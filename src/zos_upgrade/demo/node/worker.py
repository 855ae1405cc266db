#!/usr/bin/env python3
"""Demo service `worker`: every 0.2 s writes the installed release's version to a status file."""

import json
import os
import time
from pathlib import Path

BROKEN = False  # the demo's release 1.2.0 sets this: the worker then dies at start
ROOT = Path(os.environ["DEMO_ROOT"])
STATUS = ROOT / "var/lib/demo/worker.status"

if __name__ == "__main__":
    if BROKEN:
        raise SystemExit("worker: cannot start (this release is broken on purpose)")
    STATUS.parent.mkdir(parents=True, exist_ok=True)
    while True:
        version = (ROOT / "opt/demo/VERSION").read_text().strip()
        tmp = STATUS.with_suffix(".tmp")
        tmp.write_text(json.dumps({"service": "worker", "version": version, "pid": os.getpid(),
                                   "at": time.time()}))
        os.replace(tmp, STATUS)
        time.sleep(0.2)
