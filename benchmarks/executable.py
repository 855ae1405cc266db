"""The one-file executable (``make dist``: dist/zos-upgrade) against ``python -m zos_upgrade`` from the
venv, in the same run (issue 21): start-up time of ``--version`` and of ``status``, size on disk,
and the idle daemon's resident memory.

* start-up: hyperfine (Debian's), ``--warmup 2`` then ``--runs N`` each, no shell (``-N``); the
  figure is hyperfine's median. ``status`` reads an empty node root (nothing to show, all its code).
* size: the executable's bytes; for the venv, the files of zos-upgrade and its runtime dependency
  closure (importlib.metadata), plus what it needs of the interpreter (stdlib, binary, libpython).
* memory: ``daemon_idle.daemon_run`` for both (a sandbox node, a hub, a real supervisord; the
  daemon idle, checking every 0.5 s): the peak VmRSS of the daemon's process tree, median of runs.

    .venv/bin/python benchmarks/executable.py [--exe dist/zos-upgrade] [--runs 15] [--mem-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from daemon_idle import daemon_run  # noqa: E402

from tests.support.procs import zos_upgrade_cmd  # noqa: E402


def startup(cmds: dict[str, list[str]], runs: int) -> dict[str, float]:
    """name -> median seconds (hyperfine), every command in one hyperfine run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "h.json"
        argv = ["hyperfine", "-N", "--warmup", "2", "--runs", str(runs), "--export-json", str(out),
                "--style", "none"]
        for name in cmds:  # names apply to the commands in order
            argv += ["-n", name]
        argv += [" ".join(cmd) for cmd in cmds.values()]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        found = json.loads(out.read_text())["results"]
    return {r["command"]: float(r["median"]) for r in found}


def closure_bytes(name: str) -> int:
    """Bytes of the files of distribution ``name`` and of its runtime requirements, recursively."""
    seen: set[str] = set()
    todo, total = [name], 0
    while todo:
        dist_name = re.split(r"[\s\[<>=!~;(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if dist_name in seen:
            continue
        seen.add(dist_name)
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
        todo += [req for req in dist.requires or () if "extra ==" not in req]
    return total


def interpreter_bytes() -> int:
    """What the venv needs of the interpreter's installation: its standard library (without its
    own tests and site-packages), the interpreter binary and libpython."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = (stdlib / "test", stdlib / "site-packages")
    total = sum(p.stat().st_size for p in stdlib.rglob("*")
                if p.is_file() and not p.is_symlink() and not any(p.is_relative_to(s) for s in skip))
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    for path in (Path(os.path.realpath(sys.executable)), Path(str(libdir)) / str(library)):
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exe", type=Path, default=REPO / "dist" / "zos-upgrade")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--mem-runs", type=int, default=3)
    args = parser.parse_args()
    if not args.exe.is_file():
        print(f"no executable at {args.exe}: run `make dist` first (nothing measured)")
        return 0
    exe = str(args.exe.resolve())
    print(f"load average before: {os.getloadavg()}  nproc={os.cpu_count()}")
    said = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"executable: {exe} ({said})")
    with tempfile.TemporaryDirectory() as node:
        times = startup({
            "exe --version": [exe, "--version"],
            "venv --version": zos_upgrade_cmd("--version"),
            "exe status": [exe, "status", "--root", node],
            "venv status": zos_upgrade_cmd("status", "--root", node),
        }, args.runs)
    for what in ("--version", "status"):
        exe_s, venv_s = times[f"exe {what}"], times[f"venv {what}"]
        print(f"start-up {what:9}  exe {exe_s * 1000:7.1f} ms   venv {venv_s * 1000:7.1f} ms   "
              f"exe/venv {exe_s / venv_s:.2f}   (medians of {args.runs})")
    packages = closure_bytes("zos-upgrade")
    interpreter = interpreter_bytes()
    size = args.exe.stat().st_size
    print(f"size: exe {size / 2**20:.1f} MiB; venv runtime packages {packages / 2**20:.1f} MiB + the "
          f"interpreter it needs {interpreter / 2**20:.1f} MiB (stdlib, binary, libpython)")
    exe_rss, venv_rss = [], []
    for _ in range(args.mem_runs):
        exe_rss.append(daemon_run("insecure", 5.0, 10, [], cli=lambda *a: [exe, *a]))
        venv_rss.append(daemon_run("insecure", 5.0, 10, []))
    e, v = statistics.median(exe_rss) / 1024, statistics.median(venv_rss) / 1024
    print(f"idle daemon peak RSS: exe {e:.1f} MiB (runs {[round(x / 1024, 1) for x in exe_rss]})   "
          f"venv {v:.1f} MiB (runs {[round(x / 1024, 1) for x in venv_rss]})   exe/venv {e / v:.2f}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
