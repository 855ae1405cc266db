"""Load on the hub: 1,000 simulated nodes polling ``/light`` while 20 nodes materialize a release.

Issue #8, item 3. Everything runs on loopback and everything started here is stopped here.

- The hub is ``zos-upgrade hub serve`` in its own process. It serves a symlink flist
  (``golden/app:latest.flist``, the same fixture as ``benchmarks/hub.py``) and a 50 MB release
  (``golden/load-1.0.0.fl``, 500 files, packed into the hub's ``/blocks`` folder).
- The load generator is this file with ``--poll``, in its own process(es): asyncio, one coroutine per
  simulated node. A node polls ``/light`` at its own interval (``--interval`` seconds, each poll
  jittered by +-``--jitter``, the first one at a random phase), unconditionally the first time and
  then with ``If-None-Match`` and the ETag it got. Like a real client it reuses its connection while
  the server keeps it open (under 4 s idle; uvicorn closes at 5 s) and otherwise connects anew, so at
  a 10 s interval every poll opens a connection. Polls are scheduled on a fixed timetable: a slow
  answer does not postpone the next one (the generator's lag behind the timetable is reported, so a
  generator that cannot keep up is visible instead of quietly lowering the offered rate).
- The 20 materializing nodes are this file with ``--materialize``, 20 processes started together
  a few seconds into the first phase: each downloads the flist from the hub, then materializes it
  from the hub's ``/blocks`` (the ``http://`` store) through its own empty block cache, with the
  retry policy a node uses (``net.fetch``'s default); every retry is counted and reported with its
  reason, and a materialization that fails anyway is an error.

Phases:
1. 1,000 nodes, interval 10 s, for ``--seconds`` (60): about 100 requests/s offered, with the 20
   materializations in the same window.
2. Polling only, 1,000 nodes at interval 10 s, ``--runs`` runs of ``--short`` seconds each,
   alternating between the hub and the baseline: ``python -m http.server`` serving a static copy of
   the same ``/light`` bytes (it sends no ETag, so its nodes revalidate with ``If-Modified-Since``).
3. Saturation: the interval compressed step by step (``--steps``, seconds), both servers, one run of
   ``--short`` seconds per step and server.
Errors are any answer other than 200/304 plus connection errors and timeouts (10 s per request). A
poll sent on a reused connection that the server closed before answering (the keep-alive timeout
race) is sent again once on a new connection, as RFC 9112 9.3.1 allows; those are counted apart.
Peak resident memory of each server: ``VmHWM`` of its process in ``/proc/<pid>/status``.

    .venv/bin/python benchmarks/load.py [--nodes 1000] [--seconds 60] [--short 15] [--runs 3]

About 5 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import logging
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "src"), str(HERE)]

from hub import LIGHT, build_trees, cpu_model  # noqa: E402  (benchmarks/hub.py: the same fixture)

from tests.support.procs import free_port, serving, zos_upgrade_cmd  # noqa: E402

MB = 1_000_000
REQUEST_TIMEOUT = 10.0
REUSE_IDLE = 4.0  # uvicorn closes an idle keep-alive connection after 5 s
RELEASE = "golden/load-1.0.0.fl"
MAX_SECONDS = 240.0
# a step counts as served when no request failed and 99 % were answered within this (queueing shows
# as a jump of the median from ~2 ms to hundreds)
SATURATED_P99_MS = 100.0


# --- the polling nodes (their own process) -----------------------------------------------------------


@dataclass
class PollStats:
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    connections: int = 0
    stale_retries: int = 0  # requests sent again after the server closed an idle keep-alive connection


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    version, status = head[0].split(" ", 2)[:2]
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
    length = fields.get("content-length")
    if length is not None:
        await reader.readexactly(int(length))
    elif status not in ("304", "204"):
        await reader.read()
        keep = False
    return int(status), fields, keep


async def _node(port: int, interval: float, jitter: float, start: float, until: float,
                rng: random.Random, stats: PollStats, validator: str, stop: asyncio.Event) -> None:
    """One node: ``validator`` is the conditional header line it sends (empty: none yet)."""
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    last_answer = 0.0
    due = start + rng.uniform(0, interval)
    try:
        while due < until and not stop.is_set():
            now = time.monotonic()
            if due > now:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), due - now)
                if stop.is_set():
                    break
            sent = time.monotonic()
            stats.lags.append(sent - due)
            due += interval * rng.uniform(1 - jitter, 1 + jitter)
            if conn is not None and sent - last_answer > REUSE_IDLE:
                conn[1].close()
                conn = None
            request = f"GET {LIGHT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{validator}\r\n".encode()
            reused = conn is not None
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    try:
                        if conn is None:
                            conn = await _connect(port, stats)
                        status, fields, keep = await _exchange(conn, request)
                    except (ConnectionError, asyncio.IncompleteReadError) as exc:
                        if not (reused and _nothing_received(exc)):
                            raise
                        # RFC 9112 9.3.1: a request the server closed a reused connection on, before
                        # answering, may be sent again on a new one (the keep-alive timeout race:
                        # uvicorn closes after 5 s idle, counted from when it finished the answer)
                        assert conn is not None
                        conn[1].close()
                        conn, reused = None, False
                        stats.stale_retries += 1
                        conn = await _connect(port, stats)
                        status, fields, keep = await _exchange(conn, request)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
                kind = f"{type(exc).__name__} on a {'reused' if reused else 'new'} connection"
                stats.errors[kind] = stats.errors.get(kind, 0) + 1
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            last_answer = time.monotonic()
            stats.latencies.append(last_answer - sent)
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if status == 200:
                validator = _validator_of(fields)
            if not keep:
                conn[1].close()
                conn = None
    finally:
        if conn is not None:
            conn[1].close()


async def _connect(port: int, stats: PollStats) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    conn = await asyncio.open_connection("127.0.0.1", port)
    stats.connections += 1
    return conn


async def _exchange(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                    request: bytes) -> tuple[int, dict[str, str], bool]:
    conn[1].write(request)
    return await _read_answer(conn[0])


def _nothing_received(exc: BaseException) -> bool:
    """True when the server closed the connection without a byte of an answer."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionError)


def _validator_of(fields: dict[str, str]) -> str:
    """The revalidation header line for an answer: its ETag, else its Last-Modified (http.server)."""
    if "etag" in fields:
        return f"If-None-Match: {fields['etag']}\r\n"
    if "last-modified" in fields:
        return f"If-Modified-Since: {fields['last-modified']}\r\n"
    return ""


async def _validator(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {LIGHT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        status, fields, _ = await _read_answer(reader)
    finally:
        writer.close()
    if status != 200:
        raise RuntimeError(f"port {port}: {LIGHT} answered {status}, expected 200")
    return _validator_of(fields)


def poll(port: int, nodes: int, interval: float, jitter: float, seconds: float,
         seed: int) -> dict[str, object]:
    """Run ``nodes`` polling nodes for ``seconds``; the figures as JSON-able data.

    Every node starts as one that has polled before (the fleet's steady state): it already holds the
    validator of the current answer, taken by one request before the clock starts, so its polls are
    conditional from the first. A node whose validator stops matching gets a 200 and a new one.
    SIGUSR1 ends the run early (phase 1 lasts until the materializations are done).
    """
    stats = PollStats()
    rng = random.Random(seed)
    cpu0 = time.process_time()

    async def run() -> float:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
        start = time.monotonic() + 0.5
        until = start + seconds
        known = await _validator(port)
        await asyncio.gather(*(
            _node(port, interval, jitter, start, until, random.Random(rng.random()), stats, known, stop)
            for _ in range(nodes)
        ))
        return time.monotonic() - start

    elapsed = asyncio.run(run())
    return {"statuses": stats.statuses, "errors": stats.errors, "latencies": stats.latencies,
            "lags": stats.lags, "connections": stats.connections, "stale_retries": stats.stale_retries,
            "elapsed": elapsed,
            "cpu": time.process_time() - cpu0}


# --- a materializing node (its own process) ----------------------------------------------------------


async def _materialize_node(base: str, dest: Path, cache_dir: Path, keepalive: float) -> dict[str, object]:
    import httpx

    from zos_upgrade import net
    from zos_upgrade.flist.cache import BlockCache
    from zos_upgrade.flist.materialize import materialize
    from zos_upgrade.flist.stores import HttpStore

    # the node's own retry policy (net.fetch's default), as a real node runs it; every retry is
    # counted from its log record and reported with its reason, so none is hidden
    retries: dict[str, int] = {}

    class CountRetries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reason = str(getattr(record, "reason", record.getMessage()))
            retries[reason] = retries.get(reason, 0) + 1

    logging.getLogger("zos_upgrade.net").addHandler(CountRetries(logging.WARNING))
    started = time.monotonic()
    # keepalive < 0: httpx's default (5 s, what the node's clients use)
    limits = httpx.Limits() if keepalive < 0 else httpx.Limits(keepalive_expiry=keepalive)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        answer = await net.fetch(client, f"{base}/{RELEASE}", max_bytes=64 * MB)
        flist = dest.parent / f"{dest.name}.fl"
        flist.write_bytes(answer.body)
        store = HttpStore(f"{base}/blocks", client=client)
        report = await materialize(flist, dest, store=store, cache=BlockCache(cache_dir))
    return {"seconds": time.monotonic() - started, "bytes": report.bytes_written,
            "downloaded": report.bytes_downloaded + len(answer.body), "files": report.files,
            "retries": retries}


# --- the orchestration ------------------------------------------------------------------------------


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start_pollers(port: int, nodes: int, interval: float, seconds: float, generators: int,
                  jitter: float) -> list[subprocess.Popen[str]]:
    shares = [nodes // generators + (1 if i < nodes % generators else 0) for i in range(generators)]
    return [
        child(
            [sys.executable, __file__, "--poll", str(port), str(share), str(interval), str(jitter),
             str(seconds), str(1000 + i)],
        )
        for i, share in enumerate(shares)
    ]


_CHILDREN: list[subprocess.Popen[str]] = []


def child(cmd: list[str]) -> subprocess.Popen[str]:
    """A load or node process of this benchmark, remembered so that ``main`` stops it whatever happens."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    _CHILDREN.append(proc)
    return proc


def stop_children() -> None:
    for proc in _CHILDREN:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def collect(procs: Sequence[subprocess.Popen[str]], timeout: float) -> list[dict[str, object]]:
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"a load process exited with {proc.returncode}")
        results.append(json.loads(out))
    return results


@dataclass
class Merged:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    lag_p99_ms: float
    statuses: dict[str, int]
    errors: int
    error_kinds: dict[str, int]
    connections: int
    stale_retries: int
    gen_cpu: float  # generator CPU seconds per wall second, summed over its processes


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def merge(results: list[dict[str, object]]) -> Merged:
    statuses: dict[str, int] = {}
    kinds: dict[str, int] = {}
    latencies: list[float] = []
    lags: list[float] = []
    for r in results:
        for k, v in r["statuses"].items():  # type: ignore[attr-defined]
            statuses[k] = statuses.get(k, 0) + v
        for k, v in r["errors"].items():  # type: ignore[attr-defined]
            kinds[k] = kinds.get(k, 0) + v
        latencies += r["latencies"]  # type: ignore[arg-type]
        lags += r["lags"]  # type: ignore[arg-type]
    elapsed = max(float(r["elapsed"]) for r in results)  # type: ignore[arg-type]
    answered = sum(statuses.values())
    bad = sum(v for k, v in statuses.items() if k not in ("200", "304"))
    return Merged(
        requests=answered, rps=answered / elapsed, p50_ms=1000 * quantile(latencies, 0.50),
        p99_ms=1000 * quantile(latencies, 0.99), lag_p99_ms=1000 * quantile(lags, 0.99),
        statuses=statuses, errors=bad + sum(kinds.values()), error_kinds=kinds,
        connections=sum(int(r["connections"]) for r in results),  # type: ignore[call-overload]
        stale_retries=sum(int(r["stale_retries"]) for r in results),  # type: ignore[call-overload]
        gen_cpu=sum(float(r["cpu"]) for r in results) / elapsed,  # type: ignore[arg-type]
    )


def run_polling(port: int, args: argparse.Namespace, interval: float, seconds: float) -> Merged:
    procs = start_pollers(port, args.nodes, interval, seconds, args.generators, args.jitter)
    return merge(collect(procs, seconds + 60))


def build_release(work: Path, hub_root: Path, blocks: Path, megabytes: int) -> int:
    from flist import generate  # benchmarks/flist.py: the same mixed tree generator

    from zos_upgrade.flist.pack import pack
    from zos_upgrade.flist.stores import DirStore

    src = work / "release-src"
    generate(src, files=megabytes * 10, total=megabytes * MB, seed=8)
    asyncio.run(pack(src, hub_root / RELEASE, DirStore(blocks)))
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    shutil.rmtree(src)
    return size


def fmt(m: Merged) -> str:
    return (f"{m.rps:.0f} req/s, p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms, errors {m.errors} "
            f"{m.error_kinds or ''}, statuses {m.statuses}, connections {m.connections}, "
            f"stale keep-alive retries {m.stale_retries}, "
            f"generator lag p99 {m.lag_p99_ms:.0f} ms, generator CPU {m.gen_cpu:.2f} core")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--jitter", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="phase 1 length at least (it lasts until the materializations are done; "
                             "at most 240)")
    parser.add_argument("--short", type=float, default=15.0, help="length of each run of phases 2 and 3")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", default="2,1,0.75,0.5,0.25", help="phase 3 intervals, seconds")
    parser.add_argument("--materializers", type=int, default=20)
    parser.add_argument("--release-mb", type=int, default=50)
    parser.add_argument("--generators", type=int, default=1, help="load generator processes")
    parser.add_argument("--phases", default="1,2,3", help="which phases to run")
    parser.add_argument("--keepalive-expiry", type=float, default=-1.0,
                        help="idle seconds before a materializing node drops a pooled connection "
                             "(default: httpx's 5 s, the node's own)")
    args = parser.parse_args()
    args.seconds = min(args.seconds, MAX_SECONDS)
    args.short = min(args.short, MAX_SECONDS)
    steps = [float(s) for s in args.steps.split(",") if s]

    print(f"machine: nproc={os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}")
    print(f"load average at start: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="zu-bench-load-") as tmp:
        work = Path(tmp)
        hub_root, blocks, static, _, light = build_trees(work)
        release_bytes = build_release(work, hub_root, blocks, args.release_mb)
        print(f"release: {release_bytes / MB:.1f} MB, {args.release_mb * 10} files, "
              f"{RELEASE} on the hub", flush=True)
        hub_port, static_port = free_port(), free_port()
        hub_cmd = zos_upgrade_cmd("hub", "serve", "--root", str(hub_root), "--port", str(hub_port),
                                  "--blocks", str(blocks))
        static_cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(static),
                      str(static_port)]
        # http.server answers If-Modified-Since from the file's mtime: make it an exact second in the past
        past = time.time() - 3600
        os.utime(static / LIGHT.lstrip("/"), (past, past))
        with serving(hub_cmd, hub_port) as hub, serving(static_cmd, static_port) as baseline:
            check_same_answer(hub_port, static_port, light)
            try:
                run_phases(args, steps, work, hub, hub_port, static_port, release_bytes)
            finally:
                stop_children()
            print(f"\nhub peak RSS (VmHWM) over all phases {vm_hwm_kib(hub.pid) / 1024:.1f} MiB; "
                  f"http.server {vm_hwm_kib(baseline.pid) / 1024:.1f} MiB")
    print(f"load average at end: {loadavg()}")
    return 0


def run_phases(args: argparse.Namespace, steps: list[float], work: Path, hub: subprocess.Popen[bytes],
               hub_port: int, static_port: int, release_bytes: int) -> None:
    phases = set(args.phases.split(","))
    if "1" in phases:
        phase_one(args, work, hub, hub_port, release_bytes)
    if "2" in phases:
        phase_two(args, hub_port, static_port)
    if "3" in phases:
        phase_three(args, steps, hub_port, static_port)


def phase_one(args: argparse.Namespace, work: Path, hub: subprocess.Popen[bytes], hub_port: int,
              release_bytes: int) -> None:
    """Polling and the materializations in the same window."""
    print(f"\nphase 1: {args.nodes} nodes every {args.interval:g} s +-{args.jitter:.0%} for "
          f"{args.seconds:g} s, {args.materializers} nodes materializing; load {loadavg()}",
          flush=True)
    pollers = start_pollers(hub_port, args.nodes, args.interval, MAX_SECONDS, args.generators, args.jitter)
    polling_started = time.monotonic()
    time.sleep(5.0)
    for i in range(args.materializers):
        (work / f"node{i}").mkdir()
    mat_started = time.monotonic()
    base = f"http://127.0.0.1:{hub_port}"
    workers = [
        child([sys.executable, __file__, "--materialize", base, str(work / f"node{i}" / "dest"),
               str(work / f"node{i}" / "cache"), str(args.keepalive_expiry)])
        for i in range(args.materializers)
    ]
    mats = collect(workers, MAX_SECONDS)
    mat_wall = time.monotonic() - mat_started
    time.sleep(max(2.0, args.seconds - (time.monotonic() - polling_started)))
    for proc in pollers:
        proc.send_signal(signal.SIGUSR1)
    phase1 = merge(collect(pollers, 60))
    print(f"  polling lasted {time.monotonic() - polling_started:.0f} s; the materializations ran from "
          f"5 s to {5 + mat_wall:.0f} s")
    hub_hwm_1 = vm_hwm_kib(hub.pid)
    print(f"  polling: {fmt(phase1)}")
    failed = [m for m in mats if "error" in m]
    for m in failed:
        print(f"  materialization FAILED after {float(m['seconds']):.1f} s: {m['error']}")  # type: ignore[arg-type]
    mats = [m for m in mats if "error" not in m]
    retried: dict[str, int] = {}
    for m in mats:
        for reason, count in m["retries"].items():  # type: ignore[attr-defined]
            retried[reason] = retried.get(reason, 0) + count
    print(f"  materializations: {sum(retried.values())} requests retried by the nodes' retry policy "
          f"{retried or ''}")
    if not mats:
        return
    secs = [float(m["seconds"]) for m in mats]  # type: ignore[arg-type]
    rates = [float(m["bytes"]) / MB / float(m["seconds"]) for m in mats]  # type: ignore[arg-type]
    total = sum(float(m["bytes"]) for m in mats)  # type: ignore[arg-type]
    print(f"  materializations: {len(mats)} x {release_bytes / MB:.1f} MB, each "
          f"median {statistics.median(secs):.1f} s (min-max {min(secs):.1f}-{max(secs):.1f}), "
          f"median {statistics.median(rates):.2f} MB/s per node; all done after {mat_wall:.1f} s "
          f"= {total / MB / mat_wall:.1f} MB/s together; every tree {release_bytes} bytes: "
          f"{all(int(m['bytes']) == release_bytes for m in mats)}, failed: {len(failed)}")  # type: ignore[call-overload]
    print(f"  hub peak RSS (VmHWM) {hub_hwm_1 / 1024:.1f} MiB; load {loadavg()}", flush=True)
    for i in range(args.materializers):
        shutil.rmtree(work / f"node{i}", ignore_errors=True)


def phase_two(args: argparse.Namespace, hub_port: int, static_port: int) -> None:
    """Polling only, hub and http.server alternating."""
    print(f"\nphase 2: polling only, {args.runs} runs of {args.short:g} s per server; "
          f"load {loadavg()}", flush=True)
    runs: dict[str, list[Merged]] = {"hub": [], "http.server": []}
    for r in range(args.runs):
        order = [("hub", hub_port), ("http.server", static_port)]
        for who, port in order if r % 2 == 0 else order[::-1]:
            m = run_polling(port, args, args.interval, args.short)
            runs[who].append(m)
            print(f"  {who}: {fmt(m)}", flush=True)
    summarize("phase 2", runs)


def phase_three(args: argparse.Namespace, steps: list[float], hub_port: int, static_port: int) -> None:
    """The polling interval compressed step by step until the server (or the generator) saturates."""
    best: dict[str, float] = {}
    print(f"\nphase 3: saturation, {args.short:g} s per step; load {loadavg()}", flush=True)
    for interval in steps:
        offered = args.nodes / interval
        for who, port in (("hub", hub_port), ("http.server", static_port)):
            m = run_polling(port, args, interval, args.short)
            print(f"  interval {interval:g} s (offered {offered:.0f} req/s) {who}: {fmt(m)}",
                  flush=True)
            if m.errors == 0 and m.p99_ms < SATURATED_P99_MS:
                best[who] = max(best.get(who, 0.0), m.rps)
    print(f"  phase 3 highest rate served without error and with p99 under {SATURATED_P99_MS:g} ms: "
          f"hub {best.get('hub', 0):.0f} req/s, "
          f"http.server {best.get('http.server', 0):.0f} req/s, ratio "
          f"{best.get('hub', 0) / best['http.server'] if best.get('http.server') else float('nan'):.2f}; "
          f"load {loadavg()}")


def summarize(label: str, runs: dict[str, list[Merged]]) -> None:
    def med(who: str, attr: str) -> tuple[float, float, float]:
        values = [float(getattr(m, attr)) for m in runs[who]]
        return statistics.median(values), min(values), max(values)

    for who in runs:
        rps, p50, p99 = med(who, "rps"), med(who, "p50_ms"), med(who, "p99_ms")
        errors = sum(m.errors for m in runs[who])
        print(f"  {label} {who}: median {rps[0]:.1f} req/s ({rps[1]:.1f}-{rps[2]:.1f}), "
              f"p50 {p50[0]:.2f} ms ({p50[1]:.2f}-{p50[2]:.2f}), p99 {p99[0]:.2f} ms "
              f"({p99[1]:.2f}-{p99[2]:.2f}), errors {errors}")
    hub, base = med("hub", "p99_ms")[0], med("http.server", "p99_ms")[0]
    hub50, base50 = med("hub", "p50_ms")[0], med("http.server", "p50_ms")[0]
    rps_ratio = med("hub", "rps")[0] / med("http.server", "rps")[0]
    print(f"  {label} ratio hub / http.server: req/s {rps_ratio:.2f}, p50 latency {hub50 / base50:.2f}, "
          f"p99 latency {hub / base:.2f} (latency below 1: the hub answers faster)")


def check_same_answer(hub_port: int, static_port: int, light: str) -> None:
    """Both servers give the same /light bytes, and each answers its own conditional request with 304."""
    import urllib.error
    import urllib.request

    for port in (hub_port, static_port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{LIGHT}") as answer:
            assert answer.read().decode() == light, f"port {port}: /light differs from the fixture"
            etag, modified = answer.headers.get("ETag"), answer.headers.get("Last-Modified")
        header = {"If-None-Match": etag} if etag else {"If-Modified-Since": modified}
        assert etag or email.utils.parsedate_to_datetime(modified)
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{LIGHT}", headers=header))
            raise AssertionError(f"port {port}: a conditional request did not get 304")
        except urllib.error.HTTPError as exc:
            assert exc.code == 304, f"port {port}: conditional request answered {exc.code}"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--poll":
        port, nodes, interval, jitter, seconds, seed = sys.argv[2:8]
        print(json.dumps(poll(int(port), int(nodes), float(interval), float(jitter),
                              min(float(seconds), MAX_SECONDS), int(seed))))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--materialize":
        base, dest, cache, keepalive = sys.argv[2:6]
        began = time.monotonic()
        try:
            print(json.dumps(asyncio.run(_materialize_node(base, Path(dest), Path(cache), float(keepalive)))))
        except Exception as exc:  # reported as an error of the run, with its type and message
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "seconds": time.monotonic() - began}))
        sys.exit(0)
    sys.exit(main())
