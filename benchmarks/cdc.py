"""In-file changes, fixed blocks vs content-defined chunks vs casync: bytes a node fetches (issue 19.3).

One file (``--mb``, default 20 MB, random bytes; half of it text with ``--text``), two changes:
200 scattered 4 KiB edits, and 1 MB (1,000,000 bytes) inserted 100 KB from the start. For each
chunking the old and the new file are packed (v2 ``.fl``) into one dir:// store, the old release is
unpacked into a node's block cache, then the new one is unpacked with the same cache: the blocks it
lacks are fetched over http:// from a counting HTTP server on loopback serving the store. casync
gets the same two files: ``casync make`` of both into one store, ``casync extract --seed`` of the old
file, its chunks fetched from the same kind of counting server. Counted: body bytes the server sent
(headers excluded, on both sides). Pack time: a generated tree (``--tree-mb``) packed fixed and cdc,
medians of ``--runs``.

    .venv/bin/python benchmarks/cdc.py [--mb 20] [--tree-mb 60] [--runs 3] [--params 16384:65536:262144 ...]

Needs ``casync`` (``apt-get install -y casync``, done here when run as root and missing).
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.chunking import CDC, FIXED, Chunking, parse_chunking
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore, open_store

MB = 1_000_000


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0
        self.requests = 0
        self.lock = threading.Lock()


def _handler(counter: _Counter, root: str) -> type[http.server.SimpleHTTPRequestHandler]:
    class Counting(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=root, **kwargs)  # type: ignore[arg-type]

        def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
            data = source.read()
            outputfile.write(data)
            with counter.lock:
                counter.bytes += len(data)
                counter.requests += 1

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Counting


@contextmanager
def counting_server(root: Path) -> Iterator[tuple[str, _Counter]]:
    """``python -m http.server`` over ``root`` on a free loopback port, counting body bytes sent."""
    counter = _Counter()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(counter, str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counter
    finally:
        server.shutdown()
        server.server_close()


def make_file(size: int, text: bool, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    if not text:
        return rng.randbytes(size)
    words = [rng.randbytes(rng.randrange(2, 9)).hex() for _ in range(5000)]
    half = rng.randbytes(size // 2)
    prose = " ".join(rng.choice(words) for _ in range(size // 8)).encode()[: size - len(half)]
    return half + prose


def edits(old: bytes, seed: int = 2) -> bytes:
    new = bytearray(old)
    rng = random.Random(seed)
    for _ in range(200):
        at = rng.randrange(len(new) - 4096)
        new[at:at + 4096] = rng.randbytes(4096)
    return bytes(new)


def insertion(old: bytes, seed: int = 3) -> bytes:
    return old[:100_000] + random.Random(seed).randbytes(MB) + old[100_000:]


def _tree_of(root: Path, name: str, data: bytes) -> Path:
    tree = root / name
    tree.mkdir(parents=True)
    (tree / "big.bin").write_bytes(data)
    return tree


def ours(work: Path, old: bytes, new: bytes, chunking: Chunking) -> dict[str, float]:
    """Bytes the node fetches for ``new`` with ``old``'s blocks in its cache."""
    store_dir = work / "store"
    for name, data in (("old", old), ("new", new)):
        asyncio.run(pack(_tree_of(work, name, data), work / f"{name}.fl", DirStore(store_dir),
                         chunking=chunking))
    cache = BlockCache(work / "cache")
    with counting_server(store_dir) as (url, counter):
        async def unpack(flist: Path, dest: Path) -> None:
            store = open_store(url)
            try:
                await materialize(flist, dest, store=store, cache=cache, workers=0)
            finally:
                await store.aclose()

        asyncio.run(unpack(work / "old.fl", work / "dest-old"))
        first = counter.bytes
        started = time.perf_counter()
        asyncio.run(unpack(work / "new.fl", work / "dest-new"))
        seconds = time.perf_counter() - started
        fetched = counter.bytes - first
    assert (work / "dest-new" / "big.bin").read_bytes() == new
    blocks = sum(1 for p in store_dir.rglob("*") if p.is_file())  # both versions, distinct
    return {"bytes": fetched, "blocks": blocks, "flist_bytes": (work / "new.fl").stat().st_size,
            "seconds": seconds}


def casync(work: Path, old: bytes, new: bytes) -> dict[str, float]:
    """casync's defaults (avg 64 KiB, min 16K, max 256K, chunks compressed): bytes from its store."""
    (work / "old.bin").write_bytes(old)
    (work / "new.bin").write_bytes(new)
    store = work / "castr"
    for name in ("old", "new"):
        subprocess.run(["casync", "make", f"--store={store}", str(work / f"{name}.caibx"),
                        str(work / f"{name}.bin")], check=True, capture_output=True)
    with counting_server(work) as (url, counter):
        started = time.perf_counter()
        subprocess.run(["casync", "extract", f"--store={url}/castr", f"--seed={work / 'old.bin'}",
                        str(work / "new.caibx"), str(work / "out.bin")], check=True, capture_output=True)
        seconds = time.perf_counter() - started
    assert (work / "out.bin").read_bytes() == new
    chunks = sum(1 for p in store.rglob("*.cacnk"))
    return {"bytes": counter.bytes, "blocks": chunks, "flist_bytes": (work / "new.caibx").stat().st_size,
            "seconds": seconds}


def make_tree(root: Path, total: int) -> Path:
    """Files of 1 KB to 4 MB, half random, half text, adding up to about ``total`` bytes."""
    rng = random.Random(4)
    root.mkdir(parents=True)
    written, index = 0, 0
    while written < total:
        size = min(rng.choice([1_000, 20_000, 200_000, 1_000_000, 4_000_000]), total - written)
        folder = root / f"d{index % 20:02d}"
        folder.mkdir(exist_ok=True)
        data = rng.randbytes(size) if index % 2 else (b"line of text %d\n" % index) * (size // 16 + 1)
        (folder / f"f{index:04d}").write_bytes(data[:size])
        written, index = written + size, index + 1
    return root


def pack_seconds(tree: Path, work: Path, chunking: Chunking, runs: int) -> float:
    times = []
    for run in range(runs):
        store = work / f"pack-{chunking.kind}-{run}"
        started = time.perf_counter()
        asyncio.run(pack(tree, work / "packed.fl", DirStore(store), chunking=chunking))
        times.append(time.perf_counter() - started)
        shutil.rmtree(store)
    return statistics.median(times)


def _ensure_casync() -> None:
    if shutil.which("casync"):
        return
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "casync"], check=True, capture_output=True)
    if not shutil.which("casync"):
        sys.exit("casync is missing: apt-get install -y casync")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=20)
    parser.add_argument("--tree-mb", type=float, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--text", action="store_true", help="half the file text (compressible)")
    parser.add_argument("--params", nargs="*", default=[], metavar="MIN:AVG:MAX",
                        help="more cdc chunk sizes to compare with the default")
    args = parser.parse_args()
    _ensure_casync()
    old = make_file(int(args.mb * MB), args.text)
    modes: list[tuple[str, Chunking | None]] = [("fixed 512K", FIXED), (f"cdc {CDC.tag_value}", CDC)]
    modes += [(f"cdc {p}", parse_chunking(f"cdc:{p}")) for p in args.params]
    modes.append(("casync (defaults)", None))
    print(f"# {os.uname().nodename}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"file {args.mb} MB ({'half text' if args.text else 'random'})")
    for change, new in (("200 x 4 KiB edits", edits(old)), ("1 MB inserted at 100 KB", insertion(old))):
        results: dict[str, dict[str, float]] = {}
        for label, chunking in modes:
            with tempfile.TemporaryDirectory(prefix="zu-cdc-") as tmp:
                results[label] = casync(Path(tmp), old, new) if chunking is None else \
                    ours(Path(tmp), old, new, chunking)
        anchor = results["casync (defaults)"]["bytes"]
        print(f"\n## {change}\n| chunking | bytes fetched | x casync | blocks in store (both versions) "
              "| new index/flist bytes | fetch s |")
        print("|---|---|---|---|---|---|")
        for label, r in results.items():
            print(f"| {label} | {int(r['bytes']):,} | {r['bytes'] / anchor:.2f} | {int(r['blocks'])} | "
                  f"{int(r['flist_bytes']):,} | {r['seconds']:.2f} |")
    print(f"\n## pack of a {args.tree_mb} MB tree into dir:// (median of {args.runs}, modes interleaved)")
    print("| chunking | pack s | x fixed |\n|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="zu-cdc-pack-") as tmp:
        work = Path(tmp)
        tree = make_tree(work / "tree", int(args.tree_mb * MB))
        packers = [(label, c) for label, c in modes if c is not None]
        times: dict[str, list[float]] = {label: [] for label, _ in packers}
        for _ in range(args.runs):  # interleaved, so a change of load hits every mode alike
            for label, chunking in packers:
                times[label].append(pack_seconds(tree, work, chunking, 1))
        fixed = statistics.median(times[packers[0][0]])
        for label, _ in packers:
            median = statistics.median(times[label])
            print(f"| {label} | {median:.2f} | {median / fixed:.2f} |")
    print(f"# load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
