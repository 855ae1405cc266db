"""Bytes of the flist file a node downloads for a 1 %-of-files upgrade: whole file vs delta.

The tree of issue 19: 1,002 files (``--files``), half random and half text, ~110 KB each; packed
into a ``dir://`` store as v2 (``.fl``) and v1 (``.flist``); then 10 files (1 %) are replaced by new
content and the tree is packed again. Printed per format: the new flist's size (what a node
downloads today), the delta from the old one (``flist/delta.py``, what the hub's ``/api/delta``
sends), the ratio, and the time the hub takes to make the delta and the node to apply it. The delta
is applied and checked to rebuild the new file byte for byte. Sizes are deterministic (seeded
content); the times are medians of ``--runs``.

    .venv/bin/python benchmarks/flist_delta.py [--files 1002] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.support.deltas import pack_into_dir  # noqa: E402
from zos_upgrade.flist.delta import apply_delta, make_delta  # noqa: E402

MAX = 256 * 1024 * 1024


def build_tree(root: Path, files: int, size: int, rng: random.Random) -> list[Path]:
    paths = []
    words = [b"alpha", b"beta", b"gamma", b"delta", b"node", b"flist", b"block", b"zos"]
    for i in range(files):
        folder = root / f"d{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{i:04d}.{'bin' if i % 2 else 'txt'}"
        if i % 2:
            path.write_bytes(rng.randbytes(size))
        else:
            path.write_bytes(b" ".join(rng.choice(words) for _ in range(size // 5))[:size])
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1002)
    parser.add_argument("--size", type=int, default=110_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"command: .venv/bin/python benchmarks/flist_delta.py --files {args.files} --size {args.size} "
          f"--runs {args.runs}")
    rng = random.Random(19)
    with tempfile.TemporaryDirectory() as tmp:
        tree, blocks = Path(tmp) / "tree", Path(tmp) / "blocks"
        paths = build_tree(tree, args.files, args.size, rng)
        for suffix in (".fl", ".flist"):
            asyncio.run(pack_into_dir(tree, Path(tmp) / f"old{suffix}", blocks))
            old = (Path(tmp) / f"old{suffix}").read_bytes()
            changed = Path(tmp) / f"tree{suffix}"
            shutil.copytree(tree, changed, symlinks=True)
            for path in rng.sample(paths, max(1, args.files // 100)):
                target = changed / path.relative_to(tree)
                target.write_bytes(rng.randbytes(path.stat().st_size))
                os.utime(target, (1_800_000_000, 1_800_000_000))
            asyncio.run(pack_into_dir(changed, Path(tmp) / f"new{suffix}", blocks))
            new = (Path(tmp) / f"new{suffix}").read_bytes()
            make_times, apply_times = [], []
            delta = b""
            for _ in range(args.runs):
                started = time.perf_counter()
                made = make_delta(old, new, MAX)
                make_times.append(time.perf_counter() - started)
                if made is None:
                    raise SystemExit(f"{suffix}: no delta (the recipe does not reproduce the file)")
                delta = made
                started = time.perf_counter()
                rebuilt = apply_delta(delta, old, MAX)
                apply_times.append(time.perf_counter() - started)
                if rebuilt != new:
                    raise SystemExit(f"{suffix}: the delta does not rebuild the new file")
            print(f"{suffix:7} new flist {len(new):>9} B whole, delta {len(delta):>7} B "
                  f"({len(delta) / len(new):.3f}x); hub makes it in "
                  f"{statistics.median(make_times) * 1e3:.0f} ms, "
                  f"node applies it in {statistics.median(apply_times) * 1e3:.0f} ms "
                  f"(medians of {args.runs})")
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
