"""Pack into a real 0-db: zos-upgrade against the real ``zflist``, same tree, same 0-db, same run.

Run: ``make tools && .venv/bin/python benchmarks/pack_zdb.py`` (``--quick`` for a 20 MB smoke run).
It generates the 200 MB / 2,000-file tree of benchmarks/flist.py (mixed sizes, half random, half
text), starts one real ``zdb`` (built by ``make tools``) on loopback, and three times, interleaved
so background load hits every side alike, packs the tree:

- ``zos-upgrade flist pack TREE -o out.flist --store zdb://...`` (v1, the format zflist writes);
- ``zflist init`` + ``metadata backend`` + ``putdir TREE /`` + ``commit out.flist`` + ``close``
  (five processes, the way the real hub drives it);
- ``zos-upgrade flist pack`` into ``dir://`` (no network: what 0-db costs us);

each run into a namespace of its own, so no run finds the blocks of another. Ours runs from its
compiled bytecode, written before the runs (untimed), as an installed copy has it. It reports the
median and min-max wall time and throughput of each, the ratio of the medians (ours over zflist's
time: below 1 means faster), the CPU seconds of the packing processes and of the zdb process apart.
"""

from __future__ import annotations

import argparse
import importlib.util
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
sys.path.insert(0, str(REPO / "benchmarks"))

from flist import MB, cpu_seconds, generate, process_cpu, tree_bytes  # noqa: E402

from tests.support.procs import zos_upgrade_cmd  # noqa: E402
from tests.support.upstream import MANIFEST, running_zdb  # noqa: E402
from tests.support.zflist import Zflist  # noqa: E402

RUNS = 3


def measure(action: Callable[[], object], zdb_pid: int) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds of the packing processes, CPU seconds of zdb during ``action``."""
    os.sync()  # untimed: the previous step's dirty pages are not this step's cost
    cpu, zdb_cpu = cpu_seconds(), process_cpu(zdb_pid)
    started = time.perf_counter()
    action()
    return time.perf_counter() - started, cpu_seconds() - cpu, process_cpu(zdb_pid) - zdb_cpu


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20 MB / 200 files")
    args = parser.parse_args()
    if not MANIFEST.is_file():
        print("the real tools are not built: run `make tools` first", file=sys.stderr)
        return 1
    import json

    zflist_bin = Path(json.loads(MANIFEST.read_text())["zflist"])
    # untimed: ours runs from compiled bytecode, as an installed copy does (pip compiles at install,
    # the one-file build carries it); under PYTHONDONTWRITEBYTECODE each run would otherwise compile
    # the whole package from source (measured: ~25 ms of CPU per pack)
    package = importlib.util.find_spec("zos_upgrade")
    assert package is not None and package.origin is not None
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(package.origin).parent)], check=True)
    files, total = (200, 20 * MB) if args.quick else (2000, 200 * MB)
    with tempfile.TemporaryDirectory(prefix="bench-pack-zdb-") as tmp:
        base = Path(tmp)
        tree = base / "tree"
        generate(tree, files, total)
        size = tree_bytes(tree)
        print(f"tree: {files} files, {size / MB:.1f} MB; {platform.processor() or platform.machine()}, "
              f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
        results: dict[str, list[tuple[float, float, float]]] = {
            "ours-zdb": [], "zflist-zdb": [], "ours-dir": []}
        with running_zdb(base / "zdb") as zdb:
            for run in range(RUNS):
                ns_ours, ns_zflist = f"ours{run}", f"zflist{run}"
                zdb.namespace(ns_ours)
                zdb.namespace(ns_zflist)
                out = base / f"out-{run}.flist"

                def ours(ns: str = ns_ours, out: Path = out) -> None:
                    subprocess.run(zos_upgrade_cmd("flist", "pack", str(tree), "-o", str(out),
                                                   "--store", zdb.url(ns)), check=True, capture_output=True)

                def theirs(ns: str = ns_zflist, run: int = run, out: Path = out) -> None:
                    Zflist(zflist_bin, base / f"zf-mnt-{run}", zdb.port, ns).pack(tree, out)

                def ours_dir(run: int = run, out: Path = out) -> None:
                    subprocess.run(zos_upgrade_cmd("flist", "pack", str(tree), "-o", str(out),
                                                   "--store", f"dir://{base / f'blocks-{run}'}"),
                                   check=True, capture_output=True)

                # the order turns each run so no side always goes first
                order = [("ours-zdb", ours), ("zflist-zdb", theirs), ("ours-dir", ours_dir)]
                order = order[run % 3:] + order[:run % 3]
                for name, action in order:
                    results[name].append(measure(action, zdb.proc.pid))
                    out.unlink(missing_ok=True)
                    wall, cpu, zdb_cpu = results[name][-1]
                    print(f"run {run + 1} {name:<11} {wall:6.2f} s (CPU {cpu:.2f} s, "
                          f"zdb CPU {zdb_cpu:.2f} s)", flush=True)
                shutil.rmtree(base / f"blocks-{run}", ignore_errors=True)
        medians = {}
        for name, rows in results.items():
            walls = sorted(r[0] for r in rows)
            medians[name] = statistics.median(walls)
            cpu = statistics.median(r[1] for r in rows)
            zdb_cpu = statistics.median(r[2] for r in rows)
            print(f"{name:<11} median {medians[name]:6.2f} s ({walls[0]:.2f}-{walls[-1]:.2f}), "
                  f"{size / MB / medians[name]:6.1f} MB/s; CPU median {cpu:.2f} s, "
                  f"zdb CPU median {zdb_cpu:.2f} s")
        print(f"time ratio ours-zdb / zflist-zdb: {medians['ours-zdb'] / medians['zflist-zdb']:.2f}")
        print(f"time ratio ours-dir / zflist-zdb: {medians['ours-dir'] / medians['zflist-zdb']:.2f}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
