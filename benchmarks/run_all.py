"""Run every benchmark in this folder, one after the other (``make bench``).

Each benchmark prints its own figures and baselines; this runner only sequences them so they never
compete for the machine's cores, and stops on the first one that fails.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    me = Path(__file__).name
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != me and not p.name.startswith("_"))
    for script in scripts:
        # the machine may be shared: the load average before and after says how far to trust the figures
        print(f"\n=== {script.name} (load average {_loadavg()}) ===", flush=True)
        started = time.monotonic()
        # compare.py's summary also runs daemon_idle.py and pack_zdb.py: here they run on their own
        extra = ["--no-extras"] if script.name == "compare.py" else []
        rc = subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent)
        print(f"=== {script.name}: exit {rc} after {time.monotonic() - started:.0f}s "
              f"(load average {_loadavg()}) ===", flush=True)
        if rc != 0:
            return rc
    return 0


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
