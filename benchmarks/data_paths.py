"""What declaring data in ``hooks.paths`` costs an upgrade: saving the copy, and restoring it on rollback.

Each run builds a fresh data directory under a temp node root (``--files`` files of random bytes,
``--mb`` MiB in all, in 16 subdirectories), then times:

* **save**: ``DataPaths.save_all`` (the full copy into the state dir, every file and directory
  fsynced), what an upgrade pays before its first hook;
* **baseline**: ``cp -a`` of the same tree followed by ``sync -f`` (the same bytes copied and made
  durable by the system tools), measured in the same run;
* **restore**: ``DataPaths.restore`` after the tree was changed (renames; what a rollback pays).

Prints the median of ``--runs`` runs, min-max, and the save/baseline ratio.

    .venv/bin/python benchmarks/data_paths.py [--runs 3] [--mb 64] [--files 256]
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from zos_upgrade.upgrade.datapaths import DataPaths  # noqa: E402
from zos_upgrade.upgrade.nodefs import NodeFS  # noqa: E402


def build(tree: Path, mb: int, files: int) -> None:
    size = mb * 1024 * 1024 // files
    for i in range(files):
        path = tree / f"d{i % 16:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def one_run(mb: int, files: int) -> tuple[float, float, float]:
    base = Path(tempfile.mkdtemp(prefix="zu-bench-data-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    try:
        root, state = base / "node", base / "state"
        build(root / "srv/app", mb, files)
        subprocess.run(["sync", "-f", str(root)], check=True)
        data = DataPaths(NodeFS(root, state / "backup" / "current"), state / "backup" / "data", state)

        started = time.perf_counter()
        [saved] = data.save_all(["srv/app"])
        save = time.perf_counter() - started

        started = time.perf_counter()
        subprocess.run(["cp", "-a", str(root / "srv/app"), str(base / "cp-copy")], check=True)
        subprocess.run(["sync", "-f", str(base / "cp-copy")], check=True)
        baseline = time.perf_counter() - started

        (root / "srv/app/d00/f00000.bin").write_bytes(b"migrated")
        started = time.perf_counter()
        data.restore(saved)
        restore = time.perf_counter() - started
        assert (root / "srv/app/d00/f00000.bin").stat().st_size == mb * 1024 * 1024 // files
        return save, baseline, restore
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--files", type=int, default=256)
    args = parser.parse_args()
    results = [one_run(args.mb, args.files) for _ in range(args.runs)]
    saves, bases, restores = (sorted(r[i] for r in results) for i in range(3))

    def show(name: str, values: list[float]) -> str:
        median = statistics.median(values)
        return f"{name:9s} median {median:7.3f} s  (min {values[0]:.3f}, max {values[-1]:.3f})"

    print(f"data paths: {args.mb} MiB in {args.files} files, {args.runs} runs")
    print(show("save", saves), f"  {args.mb / statistics.median(saves):.0f} MiB/s")
    print(show("cp+sync", bases), f"  {args.mb / statistics.median(bases):.0f} MiB/s")
    print(show("restore", restores))
    print(f"save / cp -a+sync: {statistics.median(saves) / statistics.median(bases):.2f}x")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load {load:.1f}")


if __name__ == "__main__":
    main()
