"""Resident memory of an idle ``zos-upgrade daemon`` (SPEC 14), vs a bare Python interpreter.

Each run: a fresh sandbox node (``tests/e2e/daemon_node.py``) with a hub served by ``zos-upgrade hub
serve`` on loopback and a real supervisord, following the hub insecurely (mode ``insecure``) or
through TUF (mode ``tuf``: ``[trust] root`` pinned, metadata signed by ``zos-upgrade trust``, as in
``tests/e2e/trust_node.py``); ``zos-upgrade daemon --once`` first-installs a small release (two
services), then the daemon runs as a long-lived child checking the hub every
0.5 s with nothing to do. After ``--settle`` seconds its VmRSS (``/proc/<pid>/status``,
with its child processes') is sampled ``--samples`` times; the run's figure is the largest sample
(the memory an operator must budget). Baselines in the same run: a bare ``python -c 'sleep'`` (the
interpreter alone) and the same interpreter after importing everything the daemon imports (the
code's share, without any work).

Prints the median of ``--runs`` runs, min-max, ratios to the bare interpreter, and which heavy
stacks (HEAVY) the daemon still had loaded after its last round. ``--against SRC`` runs the daemon
of another source tree too, interleaved in the same runs: a before/after on one machine and load.

    .venv/bin/python benchmarks/daemon_idle.py [--runs 3] [--settle 5] [--modes insecure,tuf] [--against SRC]
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.daemon_node import Node, clean_env, sandbox_node  # noqa: E402
from tests.e2e.trust_node import TrustedNode, trusted_node  # noqa: E402
from tests.support.procs import stop_process, zos_upgrade_cmd  # noqa: E402
from zos_upgrade.daemon.loop import DUMP_MODULES_ENV  # noqa: E402

# as the daemon command imports them (cli.daemon first: asyncio without OpenSSL, zos_upgrade/lazytls.py)
IMPORTS = ("import zos_upgrade.cli, zos_upgrade.cli.daemon, zos_upgrade.daemon.wiring, zos_upgrade.daemon, "
           "time; print('ready', flush=True); time.sleep(600)")


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


# the stacks an idle daemon should not carry (issue 19): printed when the last run loaded them
HEAVY = ("ssl", "_hashlib", "httpx", "httpcore", "anyio", "h11", "tuf", "securesystemslib", "cryptography",
         "redis", "capnp", "boto3", "botocore", "obstore", "rich", "starlette", "uvicorn", "pycapnp",
         "cramjam", "zos_upgrade.flist.materialize", "zos_upgrade.flist.stores",
         "zos_upgrade.upgrade.upgrader")


def daemon_run(mode: str, settle: float, samples: int, modules: list[str],
               cli: Callable[..., list[str]] | None = None) -> int:
    """Peak VmRSS (KiB) of an idle daemon following a hub insecurely (``mode`` "insecure") or
    through TUF ("tuf": ``[trust] root`` pinned, the hub's TUF metadata signed by the real CLI).
    ``cli``: how to run it (default the venv's package; or a one-file executable). The modules it
    loaded after its last round go into ``modules``."""
    dump = Path(tempfile.mkdtemp(prefix="zu-bi-", dir="/tmp")) / "modules.txt"
    os.environ[DUMP_MODULES_ENV] = str(dump)
    try:
        with (trusted_node() if mode == "tuf" else _plain_node()) as tn:
            node: Node = tn.node if isinstance(tn, TrustedNode) else tn
            if isinstance(tn, TrustedNode):
                tn.publish("1.0.0")
            else:
                node.release("1.0.0")
            cmd = cli or zos_upgrade_cmd
            once = subprocess.run(cmd("--log-format", "json", "daemon", "--config", str(node.config),
                                      "--once"), capture_output=True, cwd=REPO, timeout=120,
                                  env=clean_env())
            if once.returncode != 0:
                raise RuntimeError(f"first install failed: {once.stderr.decode()[-2000:]}")
            with open(node.box.base / "daemon.log", "ab") as log:
                daemon = subprocess.Popen(cmd("--log-format", "json", "daemon", "--config", str(node.config)),
                                          stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                          start_new_session=True, env=clean_env())
            try:
                time.sleep(settle)  # start-up done, several idle checks made
                if daemon.poll() is not None:
                    raise RuntimeError(f"daemon exited {daemon.returncode}")
                rss = peak_rss(daemon.pid, samples)
                modules[:] = dump.read_text().split() if dump.exists() else []
                return rss
            finally:
                stop_process(daemon)
    finally:
        os.environ.pop(DUMP_MODULES_ENV, None)
        shutil.rmtree(dump.parent, ignore_errors=True)


@contextmanager
def _plain_node() -> Iterator[Node]:
    with sandbox_node() as node:
        yield node


def fmt(values: list[int]) -> str:
    mib = [v / 1024 for v in values]
    return f"{statistics.median(mib):6.1f} MiB (min-max {min(mib):.1f}-{max(mib):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--modes", default="insecure,tuf",
                        help="comma-separated: insecure (hub, [trust] insecure), tuf ([trust] root)")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--against", type=Path, metavar="SRC",
                        help="also run the daemon from this source tree (e.g. a checkout of an older "
                             "commit: git worktree add --detach DIR COMMIT; SRC = DIR/src), interleaved "
                             "in the same runs, and print the ratio to it")
    args = parser.parse_args()
    bare: list[int] = []
    imports: list[int] = []
    modes = [m for m in args.modes.split(",") if m]
    daemon: dict[str, list[int]] = {m: [] for m in modes}
    older: dict[str, list[int]] = {m: [] for m in modes}
    loaded: dict[str, list[str]] = {m: [] for m in modes}
    against = args.against.resolve() if args.against else None

    def older_cli(*a: str) -> list[str]:
        return ["env", f"PYTHONPATH={against}", sys.executable, "-m", "zos_upgrade.cli", *a]

    for _ in range(args.runs):
        bare.append(baseline("import time; time.sleep(600)", args.samples))
        imports.append(baseline(IMPORTS, args.samples))
        for mode in modes:
            if against is not None:
                older[mode].append(daemon_run(mode, args.settle, args.samples, [], cli=older_cli))
            daemon[mode].append(daemon_run(mode, args.settle, args.samples, loaded[mode]))
    model = next((line.split(":", 1)[1].strip() for line in
                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), "unknown")
    print(f"machine: nproc={os.cpu_count()}, {model}, Python {platform.python_version()}")
    print(f"runs={args.runs} settle={args.settle}s interval=0.5s samples={args.samples}")
    b = statistics.median(bare)
    print(f"bare interpreter (baseline): {fmt(bare)}  ratio 1.00")
    print(f"interpreter + daemon imports: {fmt(imports)}  ratio {statistics.median(imports) / b:.2f}")
    for mode in modes:
        if against is not None:
            print(f"idle daemon, {mode}, {against}: {fmt(older[mode])}  "
                  f"ratio {statistics.median(older[mode]) / b:.2f}")
        ratio = statistics.median(daemon[mode]) / b
        print(f"idle daemon, {mode + ':':9}     {fmt(daemon[mode])}  ratio {ratio:.2f}")
        if against is not None:
            change = statistics.median(daemon[mode]) / statistics.median(older[mode])
            print(f"  this tree / {against}: {change:.2f}")
        heavy = sorted(h for h in HEAVY if h in loaded[mode])
        print(f"  heavy modules loaded after its last round: {', '.join(heavy) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
