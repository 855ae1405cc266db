"""Block pipeline throughput: encode/decode MB/s of the v1 (xxtea) and v2 (AES-GCM) pipelines.

Baseline, measured in the same run on the same bytes: zlib level 6 (what `tar -czf` / gzip does by
default) compressing and decompressing the same 512 KiB chunks. Data: 32 MiB, half incompressible
random bytes, half repetitive text, split into 512 KiB blocks. Each figure is the median of 3 runs;
ratio = pipeline MB/s / zlib MB/s of the same direction.

Run: .venv/bin/python benchmarks/flist_blocks.py [--mib 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
import zlib
from collections.abc import Callable

from zos_upgrade.flist.blocks import (
    BLOCK_SIZE,
    decrypt_block_v1,
    decrypt_block_v2,
    encrypt_block_v1,
    encrypt_block_v2,
)


def make_chunks(mib: int) -> list[bytes]:
    rng = random.Random(20261125)
    half = mib * 1024 * 1024 // 2
    text = b"".join(f"line {i}: the quick brown fox jumps over the lazy dog\n".encode()
                    for i in range(half // 40))[:half]
    data = rng.randbytes(half) + text
    return [data[i: i + BLOCK_SIZE] for i in range(0, len(data), BLOCK_SIZE)]


def timed(work: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    chunks = make_chunks(args.mib)
    total_mb = sum(map(len, chunks)) / 1e6

    v1 = [encrypt_block_v1(c) for c in chunks]
    v2 = [encrypt_block_v2(c) for c in chunks]
    gz = [zlib.compress(c, 6) for c in chunks]

    encode_base, decode_base = "zlib-6 compress (baseline)", "zlib decompress (baseline)"
    cases: list[tuple[str, Callable[[], object], str]] = [
        (encode_base, lambda: [zlib.compress(c, 6) for c in chunks], encode_base),
        ("v1 encode (snappy+xxtea+blake2b)", lambda: [encrypt_block_v1(c) for c in chunks], encode_base),
        ("v2 encode (snappy+aes-gcm+blake2b)", lambda: [encrypt_block_v2(c) for c in chunks], encode_base),
        (decode_base, lambda: [zlib.decompress(g) for g in gz], decode_base),
        ("v1 decode + verify", lambda: [decrypt_block_v1(r, s) for r, s in v1], decode_base),
        ("v2 decode + verify", lambda: [decrypt_block_v2(r, s) for r, s in v2], decode_base),
    ]
    results = {name: timed(work, args.runs) for name, work, _ in cases}
    print(f"{args.mib} MiB in {len(chunks)} blocks, {args.runs} runs, Python {platform.python_version()}")
    print("| operation | median MB/s | min-max MB/s | ratio vs zlib |")
    print("|---|---:|---:|---:|")
    for name, _, base in cases:
        rates = [total_mb / t for t in results[name]]
        base_rate = statistics.median(total_mb / t for t in results[base])
        median = statistics.median(rates)
        print(f"| {name} | {median:.0f} | {min(rates):.0f}-{max(rates):.0f} | {median / base_rate:.2f} |")


if __name__ == "__main__":
    main()
