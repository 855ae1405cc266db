"""Flist pack and materialize throughput vs tar+gzip, and the download cost of a 1 % change.

Run: ``.venv/bin/python benchmarks/flist.py`` (about two minutes on 2 cores; ``--quick`` for a 20 MB
smoke run). It generates a 200 MB tree of 2,000 files of mixed sizes and mixed compressibility in a
temporary directory, then, three times each, interleaved so background load hits both sides alike:

- pack (v2 ``.fl``, into a fresh ``dir://`` store) vs ``tar -czf`` of the same tree;
- materialize with a cold block cache and with a warm one vs ``tar -xzf`` of that archive.

It reports the median and min-max of each and the ratio of the medians (ours over tar's, as
throughput: above 1 means faster than tar). Then it makes a second release that rewrites whole files
adding up to 1 % of the tree's bytes, and one that makes scattered 4 KiB edits adding up to 1 %, and
materializes each with the first release's blocks in the cache, reporting the bytes fetched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore

MB = 1_000_000
RUNS = 3


def file_sizes(rng: random.Random, count: int, total: int) -> list[int]:
    """Mixed sizes: mostly small files, some medium, a few large, scaled to add up to ``total``."""
    raw = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.70:
            raw.append(rng.randint(200, 32_000))
        elif pick < 0.95:
            raw.append(rng.randint(32_000, 600_000))
        else:
            raw.append(rng.randint(600_000, 6_000_000))
    scale = total / sum(raw)
    sizes = [max(1, int(s * scale)) for s in raw]
    sizes[-1] += total - sum(sizes)
    return sizes


def content(rng: random.Random, size: int) -> bytes:
    """Half the files random (like compressed assets), half text-like (compresses well)."""
    if rng.random() < 0.5:
        return rng.randbytes(size)
    words = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(512)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=64)) + b"\n"
    return bytes(out[:size])


def generate(root: Path, files: int, total: int, seed: int = 1) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for index, size in enumerate(file_sizes(rng, files, total)):
        where = root / f"d{index % 40:02d}" / f"s{index % 7}" / f"f{index:05d}.bin"
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_bytes(content(rng, size))
        paths.append(where)
    return paths


def run_pack(src: Path, flist: Path, blocks: Path) -> None:
    asyncio.run(pack(src, flist, DirStore(blocks)))


def run_materialize(flist: Path, dest: Path, blocks: Path, cache: BlockCache) -> None:
    asyncio.run(materialize(flist, dest, store=DirStore(blocks), cache=cache))


def shell(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def summary(name: str, seconds: list[float], size: int) -> tuple[float, str]:
    rates = sorted(size / MB / s for s in seconds)
    median = statistics.median(rates)
    return median, f"{name:<28} median {median:7.1f} MB/s   (min-max {rates[0]:.1f}-{rates[-1]:.1f})"


def change_whole_files(paths: list[Path], total: int, rng: random.Random) -> int:
    """Rewrite randomly chosen files (same size, new content) until 1 % of the bytes changed."""
    changed = 0
    for path in rng.sample(paths, len(paths)):
        if changed >= total // 100:
            break
        size = path.stat().st_size
        if changed + size > total // 100 * 1.2:
            continue
        path.write_bytes(rng.randbytes(size))
        changed += size
    return changed


def change_scattered(paths: list[Path], total: int, rng: random.Random) -> int:
    """Overwrite 4 KiB regions at random places of random files until 1 % of the bytes changed."""
    changed = 0
    big = [p for p in paths if p.stat().st_size > 8192]
    while changed < total // 100:
        path = rng.choice(big)
        size = path.stat().st_size
        offset = rng.randrange(0, size - 4096)
        with path.open("r+b") as handle:
            handle.seek(offset)
            handle.write(rng.randbytes(4096))
        changed += 4096
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 MB / 200 files, for a smoke run")
    args = parser.parse_args()
    total, files = (20 * MB, 200) if args.quick else (200 * MB, 2000)

    print(f"machine: {os.cpu_count()} cpus, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="zu-bench-flist-"))
    try:
        src = base / "src"
        started = time.perf_counter()
        generate(src, files, total)
        size = tree_bytes(src)
        print(f"tree: {files} files, {size / MB:.1f} MB, generated in {time.perf_counter() - started:.1f}s",
              flush=True)

        pack_s, tarc_s, cold_s, warm_s, tarx_s, tarxs_s = [], [], [], [], [], []
        flist, blocks, tarball = base / "rel.fl", base / "blocks", base / "rel.tar.gz"
        for run in range(RUNS):
            fresh(blocks)
            flist.unlink(missing_ok=True)
            pack_s.append(timed(partial(run_pack, src, flist, blocks)))
            tarball.unlink(missing_ok=True)
            tarc_s.append(timed(partial(shell, f"tar -czf '{tarball}' -C '{src}' .")))
            cache = BlockCache(fresh(base / "cache"))
            cold_s.append(timed(partial(run_materialize, flist, fresh(base / "dest"), blocks, cache)))
            warm_s.append(timed(partial(run_materialize, flist, fresh(base / "dest"), blocks, cache)))
            out = fresh(base / "untar")
            out.mkdir()
            tarx_s.append(timed(partial(shell, f"tar -xzf '{tarball}' -C '{out}'")))
            # materialize returns with the tree on disk (syncfs); tar leaves it in the page cache. This
            # second baseline pays the same durability: extract, then sync that file system.
            out = fresh(base / "untar")
            out.mkdir()
            tarxs_s.append(timed(partial(shell, f"tar -xzf '{tarball}' -C '{out}' && sync -f '{out}'")))
            print(f"run {run + 1}: pack {pack_s[-1]:.2f}s, tar -czf {tarc_s[-1]:.2f}s, "
                  f"materialize cold {cold_s[-1]:.2f}s / warm {warm_s[-1]:.2f}s, tar -xzf {tarx_s[-1]:.2f}s, "
                  f"tar -xzf + sync {tarxs_s[-1]:.2f}s", flush=True)

        p, line_p = summary("pack (v2 .fl)", pack_s, size)
        c, line_c = summary("tar -czf", tarc_s, size)
        mc, line_mc = summary("materialize, cold cache", cold_s, size)
        mw, line_mw = summary("materialize, warm cache", warm_s, size)
        x, line_x = summary("tar -xzf", tarx_s, size)
        xs, line_xs = summary("tar -xzf + sync -f", tarxs_s, size)
        for line in (line_p, line_c, line_mc, line_mw, line_x, line_xs):
            print(line)
        print(f"ratio pack / tar -czf:               {p / c:.2f}")
        print(f"ratio materialize cold / tar -xzf:   {mc / x:.2f}")
        print(f"ratio materialize warm / tar -xzf:   {mw / x:.2f}")
        print(f"ratio materialize cold / tar -xzf + sync: {mc / xs:.2f}")
        print(f"ratio materialize warm / tar -xzf + sync: {mw / xs:.2f}")
        release_stored = sum(f.stat().st_size for f in blocks.rglob("*") if f.is_file())
        print(f"release: {size / MB:.1f} MB of files, {release_stored / MB:.1f} MB of stored blocks, "
              f"tar.gz {tarball.stat().st_size / MB:.1f} MB")

        # the first release's blocks are cached (by the last warm run); make two kinds of 1 % change
        rng = random.Random(2)
        changes = (("whole files", change_whole_files), ("scattered 4 KiB edits", change_scattered))
        for label, change in changes:
            tree = fresh(base / "src2")
            shutil.copytree(src, tree)
            changed = change(sorted(p for p in tree.rglob("*") if p.is_file()), size, rng)
            second = base / "rel2.fl"
            second.unlink(missing_ok=True)
            asyncio.run(pack(tree, second, DirStore(blocks)))
            scratch = BlockCache(fresh(base / "cache2"))
            shutil.copytree(base / "cache", scratch.root, dirs_exist_ok=True)
            report = asyncio.run(materialize(second, fresh(base / "dest2"), store=DirStore(blocks),
                                             cache=scratch))
            print(f"1 % change ({label}): {changed / MB:.2f} MB of files changed; fetched "
                  f"{report.blocks_fetched} blocks, {report.bytes_downloaded / MB:.2f} MB = "
                  f"{100 * report.bytes_downloaded / release_stored:.2f} % of the release's stored bytes, "
                  f"{100 * report.bytes_downloaded / size:.2f} % of its file bytes "
                  f"({report.blocks_from_cache} blocks from the cache)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
