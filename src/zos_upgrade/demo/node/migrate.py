#!/usr/bin/env python3
"""The `migrate` hook of release 1.1.0: convert web's settings from key=value lines to JSON.

Idempotent (a re-run after a crash finds the JSON and leaves it), and it keeps the old file until
the new one is durably in place, so a rollback finds the data 1.0.0 understands.
"""

import json
import os
from pathlib import Path

ROOT = Path(os.environ["ZOS_ROOT"])  # the node root, given to every hook by the upgrader
DATA = ROOT / "var/lib/demo"

if __name__ == "__main__":
    conf, target = DATA / "settings.conf", DATA / "settings.json"
    if target.exists():
        print("settings already migrated")
        raise SystemExit(0)
    pairs = {}
    if conf.exists():
        pairs = dict(line.split("=", 1) for line in conf.read_text().splitlines() if "=" in line)
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        json.dump(pairs, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    print(f"migrated {len(pairs)} settings from {conf.name} to {target.name}")
