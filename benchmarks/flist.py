"""Flist pack and materialize throughput vs tar+gzip, and the download cost of a 1 % change.

Run: ``.venv/bin/python benchmarks/flist.py`` (about five minutes on 2 cores; ``--quick`` for a 20 MB
smoke run). It generates a 200 MB tree of 2,000 files of mixed sizes and mixed compressibility in a
temporary directory, then, three times each, interleaved so background load hits both sides alike:

- pack (v2 ``.fl``, into a fresh ``dir://`` store) vs ``tar -czf`` of the same tree;
- materialize with a cold block cache and with a warm one vs ``tar -xzf`` of that archive: with the
  default file-writer processes (one per core), and in one process (``workers=0``).

It reports the median and min-max of each and the ratio of the medians (ours over tar's, as
throughput: above 1 means faster than tar), each step's CPU seconds, and materialize and ``tar -xzf``
pinned to one core. Then, with both servers on loopback in their own processes, materialize with a
cold cache from our hub's ``/blocks`` vs ``curl | tar -xzf`` of the tarball from ``python -m
http.server`` (CPU seconds of client and server apart). Last it makes a second release that
rewrites whole files adding up to 1 % of the tree's bytes, and one that makes scattered 4 KiB edits
adding up to 1 %, and materializes each with the first release's blocks in the cache, reporting the
bytes fetched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
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

from zos_upgrade.demo.processes import free_port, stop_group, wait_for_port, zos_upgrade_cmd
from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore, HttpStore

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


def run_materialize(flist: Path, dest: Path, blocks: Path, cache: BlockCache,
                    workers: int | None = None) -> None:
    asyncio.run(materialize(flist, dest, store=DirStore(blocks), cache=cache, workers=workers))


def run_materialize_http(flist: Path, dest: Path, url: str, cache: BlockCache) -> None:
    async def run() -> None:
        store = HttpStore(url)
        try:
            await materialize(flist, dest, store=store, cache=cache)
        finally:
            await store.aclose()
    asyncio.run(run())


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_servers(base: Path, blocks: Path, static_dir: Path) -> tuple[subprocess.Popen[bytes], int,
                                                                      subprocess.Popen[bytes], int]:
    """Our hub serving ``blocks`` (its root under ``base``) and ``python -m http.server`` serving
    ``static_dir``, each on loopback in its own process group: (hub, its port, static, its port)."""
    hub_port, static_port = free_port(), free_port()
    (base / "hub-root").mkdir()
    hub = subprocess.Popen(zos_upgrade_cmd("hub", "serve", "--root", str(base / "hub-root"), "--blocks",
                                           str(blocks), "--port", str(hub_port)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    static = subprocess.Popen([sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1",
                               "--directory", str(static_dir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return hub, hub_port, static, static_port


def over_http(base: Path, flist: Path, blocks: Path, tarball: Path, size: int) -> None:
    """Cold materialize from our hub's /blocks vs curl | tar -xzf from python -m http.server, both
    servers on loopback in their own processes, sharing the two cores with the client."""
    hub, hub_port, static, static_port = start_servers(base, blocks, tarball.parent)
    try:
        wait_for_port(hub_port, hub)
        wait_for_port(static_port, static)
        times: dict[str, list[tuple[float, float, float]]] = {}
        url = f"http://127.0.0.1:{static_port}/{tarball.name}"
        for run in range(RUNS):
            steps: list[tuple[str, subprocess.Popen[bytes], Callable[[], object]]] = [
                ("materialize from the hub, cold", hub, partial(
                    run_materialize_http, flist, base / f"http{run}", f"http://127.0.0.1:{hub_port}/blocks",
                    BlockCache(base / f"http-cache{run}"))),
                ("curl | tar -xzf", static, partial(untar_url, url, base / f"curl{run}", "")),
                ("curl | tar -xzf + sync -f", static, partial(untar_url, url, base / f"curl-sync{run}",
                                                             " && sync -f .")),
            ]
            for name, server, action in steps:
                before = process_cpu(server.pid)
                wall, cpu = timed(action)
                times.setdefault(name, []).append((wall, cpu, process_cpu(server.pid) - before))
            done = ", ".join(f"{name} {times[name][-1][0]:.2f}s" for name, _, _ in steps)
            print(f"http run {run + 1}: {done}", flush=True)
        rate = {name: summary(name, [wall for wall, _, _ in runs], size) for name, runs in times.items()}
        for name, runs in times.items():
            print(f"{rate[name][1]}   CPU {statistics.median(c for _, c, _ in runs):.2f} s client, "
                  f"{statistics.median(c for _, _, c in runs):.2f} s server (medians)")
        ours = "materialize from the hub, cold"
        for theirs in ("curl | tar -xzf", "curl | tar -xzf + sync -f"):
            print(f"ratio {ours} / {theirs}: {rate[ours][0] / rate[theirs][0]:.2f}")
    finally:
        stop_group(hub)
        stop_group(static)


def shell(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def untar(tarball: Path, out: Path, then: str) -> None:
    out.mkdir()
    subprocess.run(f"tar -xzf '{tarball}'{then}", shell=True, check=True, cwd=out)


def untar_url(url: str, out: Path, then: str) -> None:
    out.mkdir()
    subprocess.run(f"curl -sSf '{url}' | tar -xzf -{then}", shell=True, check=True, cwd=out)


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, ours and our children's: tar, gzip) of ``action``."""
    # Untimed: write back what the previous step left dirty, so no step pays for another's data (a
    # materialize ends with syncfs, which would otherwise also flush the tarball or tree before it).
    os.sync()
    before = cpu_seconds()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started, cpu_seconds() - before


def cpu_seconds() -> float:
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def on_one_core(action: Callable[[], object]) -> Callable[[], object]:
    """``action`` with this process, the threads it starts and its children held to one CPU."""
    def pinned() -> None:
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})
        try:
            action()
        finally:
            os.sched_setaffinity(0, allowed)
    return pinned


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

        # Every timed step writes into directories of its own and nothing is deleted until the end:
        # on a file system that is short of recently freed inodes (ext4 without a journal, as here)
        # creating files right after thousands were deleted costs several times more (perf: ext4's
        # recently_deleted scan), which would charge one step for the clean-up of the one before.
        times: dict[str, list[tuple[float, float]]] = {}
        for run in range(RUNS):
            flist, blocks, tarball = base / f"rel{run}.fl", base / f"blocks{run}", base / f"rel{run}.tar.gz"
            cold, warm = BlockCache(base / f"cache{run}"), BlockCache(base / f"cache{run}")
            cold1 = BlockCache(base / f"cache{run}-1core")
            cold0 = BlockCache(base / f"cache{run}-0w")
            # materialize returns with the tree on disk (syncfs); tar leaves it in the page cache, so
            # tar is also timed followed by `sync -f` of its file system: the same durability.
            steps: list[tuple[str, Callable[[], object]]] = [
                ("pack (v2 .fl)", partial(run_pack, src, flist, blocks)),
                ("tar -czf", partial(shell, f"tar -czf '{tarball}' -C '{src}' .")),
                ("materialize, cold cache", partial(run_materialize, flist, base / f"cold{run}", blocks,
                                                    cold)),
                ("materialize, warm cache", partial(run_materialize, flist, base / f"warm{run}", blocks,
                                                    warm)),
                ("one process: materialize, cold", partial(
                    run_materialize, flist, base / f"cold{run}-0w", blocks, cold0, 0)),
                ("one process: materialize, warm", partial(
                    run_materialize, flist, base / f"warm{run}-0w", blocks, cold0, 0)),
                ("tar -xzf", partial(untar, tarball, base / f"untar{run}", "")),
                ("tar -xzf + sync -f", partial(untar, tarball, base / f"untar-sync{run}", " && sync -f .")),
                ("1 core: materialize, cold", on_one_core(
                    partial(run_materialize, flist, base / f"cold{run}-1core", blocks, cold1))),
                ("1 core: materialize, warm", on_one_core(
                    partial(run_materialize, flist, base / f"warm{run}-1core", blocks, cold1))),
                ("1 core: tar -xzf", on_one_core(partial(untar, tarball, base / f"untar{run}-1core", ""))),
            ]
            for name, action in steps:
                times.setdefault(name, []).append(timed(action))
            print(f"run {run + 1}: " + ", ".join(f"{name} {times[name][-1][0]:.2f}s" for name, _ in steps),
                  flush=True)

        rate = {name: summary(name, [wall for wall, _ in runs], size) for name, runs in times.items()}
        for name, runs in times.items():
            print(f"{rate[name][1]}   CPU {statistics.median(cpu for _, cpu in runs):.2f} s (median)")
        for ours, theirs in (("pack (v2 .fl)", "tar -czf"),
                             ("materialize, cold cache", "tar -xzf"), ("materialize, warm cache", "tar -xzf"),
                             ("materialize, cold cache", "tar -xzf + sync -f"),
                             ("materialize, warm cache", "tar -xzf + sync -f"),
                             ("one process: materialize, cold", "tar -xzf"),
                             ("one process: materialize, warm", "tar -xzf"),
                             ("1 core: materialize, cold", "1 core: tar -xzf"),
                             ("1 core: materialize, warm", "1 core: tar -xzf")):
            print(f"ratio {ours} / {theirs}: {rate[ours][0] / rate[theirs][0]:.2f}")
        over_http(base, flist, blocks, tarball, size)
        release_stored = sum(f.stat().st_size for f in blocks.rglob("*") if f.is_file())
        print(f"release: {size / MB:.1f} MB of files, {release_stored / MB:.1f} MB of stored blocks, "
              f"tar.gz {tarball.stat().st_size / MB:.1f} MB")

        # the first release's blocks are cached (by the last cold run); make two kinds of 1 % change
        rng = random.Random(2)
        changes = (("whole files", change_whole_files), ("scattered 4 KiB edits", change_scattered))
        for label, change in changes:
            tree = fresh(base / "src2")
            shutil.copytree(src, tree)
            changed = change(sorted(p for p in tree.rglob("*") if p.is_file()), size, rng)
            second = base / "rel2.fl"
            second.unlink(missing_ok=True)
            asyncio.run(pack(tree, second, DirStore(blocks)))
            scratch = BlockCache(fresh(base / "scratch-cache"))
            shutil.copytree(base / f"cache{RUNS - 1}", scratch.root, dirs_exist_ok=True)
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
