"""Pipelined RESP2 round trips into a real 0-db: our client with and without TCP_QUICKACK, same run.

0-db sends each reply with Nagle's algorithm on, so in a pipeline the second reply waits until the
client ACKs the first; Linux delays that ACK (~40 ms) unless the client asks for a quick one. The
pack's uploads (``ZdbStore.upload_missing``) are one pipelined ``EXISTS`` and one pipelined ``SET``
per job of up to 16 blocks, so this delay is paid twice per job. This benchmark times both
pipelines on one connection for batches of 1, 4 and 16 blocks of 330 KB (the pack benchmark's stored
blocks are 65 KB on average, a random 512 KiB one a little more), quick ACKs on and off, interleaved.

Run: ``make tools && .venv/bin/python benchmarks/resp_pipeline.py [--runs 7]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.upstream import MANIFEST, running_zdb  # noqa: E402
from zos_upgrade.flist.stores import resp  # noqa: E402
from zos_upgrade.flist.stores.base import MAX_STORED_BYTES  # noqa: E402

BLOCK_BYTES = 330_000


def batch_ms(conn: resp.RespConnection, count: int) -> tuple[float, float]:
    """Milliseconds of one pipelined EXISTS and one pipelined SET of ``count`` new blocks."""
    blocks = [(os.urandom(16), os.urandom(BLOCK_BYTES)) for _ in range(count)]
    started = time.perf_counter()
    conn.pipeline([[b"EXISTS", block_id] for block_id, _ in blocks])
    middle = time.perf_counter()
    conn.pipeline([[b"SET", block_id, data] for block_id, data in blocks])
    return (middle - started) * 1000, (time.perf_counter() - middle) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if not MANIFEST.is_file():
        print("the real tools are not built: run `make tools` first", file=sys.stderr)
        return 1
    if resp._QUICKACK is None:
        print("TCP_QUICKACK is Linux only: nothing to compare here", file=sys.stderr)
        return 1
    quickack = resp._QUICKACK
    print(f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-resp-") as tmp, running_zdb(Path(tmp) / "zdb") as zdb:
        zdb.namespace("bench")
        conn = resp.RespConnection("127.0.0.1", zdb.port, timeout=10, max_bulk=MAX_STORED_BYTES)
        try:
            conn.pipeline([[b"SELECT", b"bench"]])
            for count in (1, 4, 16):
                rows: dict[str, list[tuple[float, float]]] = {"quick ACK": [], "delayed ACK": []}
                for _ in range(args.runs):
                    for name in rows:  # interleaved, so load changes hit both alike
                        resp._QUICKACK = quickack if name == "quick ACK" else None
                        rows[name].append(batch_ms(conn, count))
                for name, times in rows.items():
                    exists = statistics.median(t[0] for t in times)
                    sets = statistics.median(t[1] for t in times)
                    print(f"{count:>2} blocks, {name:<11}: EXISTS {exists:6.1f} ms, SET {sets:6.1f} ms "
                          f"(medians of {args.runs})")
        finally:
            resp._QUICKACK = quickack
            conn.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
