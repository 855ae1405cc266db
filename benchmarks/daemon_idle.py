"""Resident memory of an idle ``zos-upgrade daemon`` (SPEC 14), vs a bare Python interpreter.

Each run: a fresh sandbox node (``tests/support/node.py``) with a hub served by ``zos-upgrade hub
serve`` on loopback and a real supervisord; ``zos-upgrade daemon --once`` first-installs a small
release (two services), then the daemon runs as a long-lived child checking the hub every
``--interval`` seconds with nothing to do. After ``--settle`` seconds its VmRSS (``/proc/<pid>/status``,
with its child processes') is sampled ``--samples`` times; the run's figure is the largest sample
(the memory an operator must budget). Baselines in the same run: a bare ``python -c 'sleep'`` (the
interpreter alone) and the same interpreter after importing everything the daemon imports (the
code's share, without any work).

Prints the median of ``--runs`` runs, min-max, and ratios to the bare interpreter.

    .venv/bin/python benchmarks/daemon_idle.py [--runs 3] [--settle 5] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.node import Sandbox, service_release  # noqa: E402
from tests.support.procs import stop_process, zos_upgrade_cmd  # noqa: E402
from tests.support.supervisord import running_supervisord  # noqa: E402

IMPORTS = ("import zos_upgrade.cli, zos_upgrade.daemon.wiring, zos_upgrade.daemon, time; "
           "print('ready', flush=True); time.sleep(600)")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and of its children, grandchildren...: a one-file executable runs as two
    processes (its bootloader and the interpreter it unpacked), and both are the daemon's cost."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss_kib(current)
        children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        todo += [int(child) for child in children]
    return total


def peak_rss(pid: int, samples: int, every: float = 0.2) -> int:
    peak = 0
    for _ in range(samples):
        peak = max(peak, tree_rss_kib(pid))
        time.sleep(every)
    return peak


def baseline(code: str, samples: int) -> int:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=REPO)
    try:
        if "ready" in code:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        else:
            time.sleep(0.5)
        return peak_rss(proc.pid, samples)
    finally:
        proc.kill()
        proc.wait()


def config(box: Sandbox, interval: float) -> Path:
    path = box.base / "zos-upgrade.toml"
    path.write_text(f"""
[node]
root = "{box.root}"
state_dir = "/state"
[source]
hub = "{box.hub_url}"
flist = "tf-zos/zos:latest.fl"
interval = {interval}
jitter = 0
[trust]
insecure = true
[supervisor]
kind = "supervisord"
socket = "/sup/supervisor.sock"
include_dir = "/sup/conf.d"
[upgrade]
self_update = false
probation = 0.2
""")
    return path


def daemon_run(interval: float, settle: float, samples: int,
               cli: Callable[..., list[str]] = zos_upgrade_cmd) -> int:
    """Peak VmRSS (KiB) of an idle daemon run by ``cli`` (the venv's package; or an executable)."""
    base = Path(tempfile.mkdtemp(prefix="zu-bi-", dir="/tmp"))
    try:
        box = Sandbox(base)
        with box.serving_hub(), running_supervisord() as sd:
            box.expose_supervisor(sd.socket_path, sd.include_dir)
            box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
            box.link("zos:latest.fl", "zos:1.0.0.fl")
            cfg = config(box, interval)
            once = subprocess.run(cli("--log-format", "json", "daemon", "--config", str(cfg),
                                                  "--once"), capture_output=True, cwd=REPO, timeout=120)
            if once.returncode != 0:
                raise RuntimeError(f"first install failed: {once.stderr.decode()[-2000:]}")
            with open(base / "daemon.log", "wb") as log:
                cmd = cli("--log-format", "json", "daemon", "--config", str(cfg))
                daemon = subprocess.Popen(cmd,
                                          stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                          start_new_session=True)
            try:
                time.sleep(settle)  # start-up done, several idle checks made
                if daemon.poll() is not None:
                    raise RuntimeError(f"daemon exited {daemon.returncode}")
                return peak_rss(daemon.pid, samples)
            finally:
                stop_process(daemon)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def fmt(values: list[int]) -> str:
    mib = [v / 1024 for v in values]
    return f"{statistics.median(mib):6.1f} MiB (min-max {min(mib):.1f}-{max(mib):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    bare: list[int] = []
    imports: list[int] = []
    daemon: list[int] = []
    for _ in range(args.runs):
        bare.append(baseline("import time; time.sleep(600)", args.samples))
        imports.append(baseline(IMPORTS, args.samples))
        daemon.append(daemon_run(args.interval, args.settle, args.samples))
    model = next((line.split(":", 1)[1].strip() for line in
                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), "unknown")
    print(f"machine: nproc={os.cpu_count()}, {model}, Python {platform.python_version()}")
    print(f"runs={args.runs} settle={args.settle}s interval={args.interval}s samples={args.samples}")
    b = statistics.median(bare)
    print(f"bare interpreter (baseline): {fmt(bare)}  ratio 1.00")
    print(f"interpreter + daemon imports: {fmt(imports)}  ratio {statistics.median(imports) / b:.2f}")
    print(f"idle daemon (peak VmRSS):     {fmt(daemon)}  ratio {statistics.median(daemon) / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
