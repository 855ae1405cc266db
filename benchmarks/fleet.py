"""Fleet simulation (issue 20, item 7): 10,000 simulated nodes polling and reporting to the real hub.

Everything runs on loopback and everything started here is stopped here.

- The hub is ``zos-upgrade hub serve`` in its own process, with a ``[rollout]`` config (node secret,
  ``min_reports``). Its repository ``zos`` holds ``zos:1.0.0.flist`` (what every node runs), the
  release under test, and the link ``zos/latest.flist`` pointing at it. The release's rollout plan is
  given to the hub (``PUT /api/rollout/zos/<release>/plan``, what `hub rollout plan` sends): a
  linear ramp over ``--ramp`` simulated seconds and, for scenario (b), ``failure_threshold`` 2 %.
- The nodes are this file with ``--nodes-of``, in ``--generators`` processes (asyncio, one coroutine
  per node). Simulated time runs ``--speed`` times faster than real time from one shared origin. A
  node polls the link's ``/light`` every ``--interval`` simulated seconds (first poll at a random
  phase, each jittered by +-10 %), on a new connection each time as a real node does at a real
  interval. When the link names a release it does not run, it computes its bucket with the shared
  rollout module (``zos_upgrade.rollout.admits``) at the simulated time; if admitted it reads the
  release's halt flag (``GET .../halt``) and, if not halted, "upgrades": a transaction of 20-40
  simulated seconds (a sleep; no flist is downloaded or applied), then ``POST .../report`` with its
  node token (upgraded, or rolled-back for the nodes the scenario makes fail). That is the real
  protocol of a node minus the download: poll, halt flag, report.
- Scenario (a): a good release, ramped over ``--ramp`` s. Reported: the simulated time from the
  ramp's start to the last node's upgrade (every node upgraded), the hub's counts at the end.
- Scenario (b): a release that fails on 5 % of the nodes (those whose sha256 of the id says so),
  threshold 2 %, ``min_reports`` 100. Reported: how many nodes started the bad release before the
  hub halted it, how many after (a node that read the flag just before the halt), when it halted.
- Both: the hub's CPU (utime+stime from ``/proc/<pid>/stat`` over the scenario's wall time), resident
  memory (``VmRSS`` at the end, ``VmHWM`` peak), and p50/p99 latency per request kind measured by the
  nodes; errors are any answer other than 200 plus connection errors and timeouts (10 s).

    .venv/bin/python benchmarks/fleet.py [--nodes 10000] [--speed 2] [--ramp 300] [--interval 120]

About 5 minutes with the defaults (bounded: each scenario stops at ``--max-seconds`` real seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "src"), str(HERE)]

from tests.support.procs import free_port, serving, zos_upgrade_cmd  # noqa: E402
from zos_upgrade.hub.rollout import node_token  # noqa: E402
from zos_upgrade.rollout import admits, parse_plan  # noqa: E402

SECRET = "fleet-simulation-node-secret-0123456789"
WRITE_TOKEN = "fleet-simulation-write-token-0123456789"
GOLDEN = REPO / "tests" / "data" / "hub-responses" / "flists" / "v2.flist"
TIMEOUT = 10.0
FAIL_SHARE = 0.05


# --- the nodes (their own processes) ----------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    started: list[float] = field(default_factory=list)  # simulated times transactions started
    upgraded: list[float] = field(default_factory=list)  # simulated times of upgraded reports
    halted_seen: int = 0  # admitted nodes that read the halt flag set and did not start
    retried: int = 0  # reports sent again after an error


async def _request(port: int, method: str, path: str, body: bytes, token: str, stats: Stats,
                   kind: str) -> tuple[int, bytes]:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        try:
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            if token:
                head += f"Authorization: bearer {token}\r\n"
            if body:
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"\r\n" + body)
            answer = await asyncio.wait_for(reader.read(), TIMEOUT)
        finally:
            writer.close()
    except (OSError, TimeoutError) as exc:
        key = f"{kind}: {type(exc).__name__}"
        stats.errors[key] = stats.errors.get(key, 0) + 1
        return 0, b""
    stats.latencies.setdefault(kind, []).append(time.monotonic() - started)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0
    if status != 200:
        key = f"{kind}: HTTP {status}"
        stats.errors[key] = stats.errors.get(key, 0) + 1
    return status, answer.partition(b"\r\n\r\n")[2]


def _fails(node_id: str) -> bool:
    digest = hashlib.sha256(b"fails\0" + node_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < FAIL_SHARE


async def _node(node_id: str, cfg: dict[str, object], stats: Stats, rng: random.Random) -> None:
    port = int(cfg["port"])  # type: ignore[call-overload]
    speed, interval = float(cfg["speed"]), float(cfg["interval"])  # type: ignore[arg-type]
    real0, sim0, until = float(cfg["real0"]), float(cfg["sim0"]), float(cfg["until"])  # type: ignore[arg-type]
    release, bad = str(cfg["release"]), bool(cfg["bad"])
    plan = parse_plan(cfg["plan"])
    token = node_token(SECRET, node_id)

    def sim_now() -> float:
        return sim0 + (time.time() - real0) * speed

    running = "1.0.0"
    pending = b""  # a report not delivered yet: sent again at the next round, like the node's queue
    done = False  # the node holds a result for this release (upgraded, or rolled back and held)
    await asyncio.sleep(rng.uniform(0, interval) / speed)
    while time.time() < until:
        if pending:
            status, _ = await _request(port, "POST", f"/api/rollout/zos/{release}/report", pending, token,
                                       stats, "report")
            if status == 200:
                pending = b""
            else:
                stats.retried += 1
        if done and not pending:
            return
        if not done:
            status, body = await _request(port, "GET", "/api/flist/zos/latest.flist/light", b"", "", stats,
                                          "poll")
            target = json.loads(body).get("target") if status == 200 else None
            if target == release and admits(plan, node_id, f"zos/{release}", sim_now()):
                asked = sim_now()  # a flag read sent after the halt is answered "halted"
                status, body = await _request(port, "GET", f"/api/rollout/zos/{release}/halt", b"", "",
                                              stats, "halt flag")
                if status == 200 and json.loads(body)["halted"]:
                    stats.halted_seen += 1
                elif status == 200:
                    stats.started.append(asked)
                    duration = rng.uniform(20, 40)
                    await asyncio.sleep(duration / speed)
                    failed = bad and _fails(node_id)
                    version = release.split(":")[1].removesuffix(".flist")
                    pending = json.dumps({
                        "node_id": node_id, "group": "sim", "version": version, "version_before": running,
                        "version_after": running if failed else version,
                        "result": "rolled-back" if failed else "upgraded",
                        "reason": "probation: service web did not come up" if failed else "",
                        "durations": {"total": round(duration, 3)}}).encode()
                    done = True
                    if not failed:
                        running = version
                        stats.upgraded.append(sim_now())
                    continue  # report at once
        await asyncio.sleep(interval * rng.uniform(0.9, 1.1) / speed)


def nodes_of(cfg: dict[str, object]) -> None:
    first, count = int(cfg["first"]), int(cfg["count"])  # type: ignore[call-overload]
    stats = Stats()
    rng = random.Random(first)

    async def run() -> None:
        # SIGTERM (the driver, once a halted rollout was watched long enough): stop, then print
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        nodes = asyncio.gather(*(_node(f"node-{i:05d}", cfg, stats, rng)
                                 for i in range(first, first + count)))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([nodes, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in (nodes, stopper):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await nodes

    cpu0 = time.process_time()
    asyncio.run(run())
    # to a file, not stdout: the driver reads it after the process ended (a full pipe would block it)
    Path(str(cfg["out"])).write_text(json.dumps({
        "latencies": stats.latencies, "errors": stats.errors, "started": stats.started,
        "upgraded": stats.upgraded, "halted_seen": stats.halted_seen, "retried": stats.retried,
        "cpu": time.process_time() - cpu0}))


# --- the driver -------------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def get_json(port: int, path: str) -> dict[str, object]:
    import httpx

    reply = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30)
    reply.raise_for_status()
    result: dict[str, object] = reply.json()
    return result


def scenario(args: argparse.Namespace, label: str, work: Path, release: str, bad: bool) -> dict[str, object]:
    import httpx

    root = work / label / "root"
    (root / "zos").mkdir(parents=True)
    for name in ("zos:1.0.0.flist", release):
        shutil.copyfile(GOLDEN, root / "zos" / name)
    os.symlink(release, root / "zos" / "latest.flist")
    cfg_file = work / label / "hub.toml"
    cfg_file.write_text(f'max_connections = 2048\n[tokens]\n"{WRITE_TOKEN}" = "zos"\n'
                        f'[rollout]\nnode_secret = "{SECRET}"\nmin_reports = {args.min_reports}\n'
                        f"threshold_percent = 50\n")
    port = free_port()
    # the simulated clock: the ramp starts a few real seconds from now, when every node is running
    real0 = time.time() + 3.0
    sim0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC).timestamp()
    plan: dict[str, object] = {"start": "2026-12-05T08:00:00Z", "duration": args.ramp}
    if bad:
        plan["failure_threshold"] = 2
    parse_plan(plan)
    with serving(zos_upgrade_cmd("hub", "serve", "--root", str(root), "--port", str(port),
                                 "--config", str(cfg_file)), port) as hub:
        reply = httpx.put(f"http://127.0.0.1:{port}/api/rollout/zos/{release}/plan", json=plan,
                          headers={"Authorization": f"bearer {WRITE_TOKEN}"})
        reply.raise_for_status()
        until = real0 + args.max_seconds
        shares = [args.nodes // args.generators + (1 if i < args.nodes % args.generators else 0)
                  for i in range(args.generators)]
        procs, first = [], 0
        for share in shares:
            cfg = {"port": port, "speed": args.speed, "interval": args.interval, "real0": real0, "sim0": sim0,
                   "until": until, "release": release, "bad": bad, "plan": plan, "first": first,
                   "count": share, "out": str(work / label / f"nodes-{first}.json")}
            procs.append(subprocess.Popen([sys.executable, __file__, "--nodes-of", json.dumps(cfg)]))
            first += share
        time.sleep(max(0.0, real0 - time.time()))
        cpu0, wall0 = proc_cpu(hub.pid), time.monotonic()
        halted_at: float | None = None
        full_at: float | None = None
        try:
            while any(p.poll() is None for p in procs):
                time.sleep(1.0)
                try:
                    status = get_json(port, f"/api/rollout/zos/{release}")
                except httpx.HTTPError:  # a hub too busy to answer the driver in 30 s: ask again
                    continue
                if not bad and full_at is None and status["counts"]["upgraded"] == args.nodes:  # type: ignore[index]
                    full_at = sim0 + (time.time() - real0) * args.speed  # the hub saw every node upgraded
                if bad and halted_at is None and status["halted"]:
                    halted_at = sim0 + (time.time() - real0) * args.speed
                    # the nodes go on polling for a while: none may start the halted release
                    until = min(until, time.time() + args.after_halt)
                if bad and halted_at is not None and time.time() > until:
                    break
            cpu, wall = proc_cpu(hub.pid) - cpu0, time.monotonic() - wall0
            mem = proc_mem(hub.pid)
            final = get_json(port, f"/api/rollout/zos/{release}")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        results = [json.loads(p.read_text()) for p in sorted((work / label).glob("nodes-*.json"))]
    lat: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    started: list[float] = []
    upgraded: list[float] = []
    halted_seen = retried = 0
    gen_cpu = 0.0
    for r in results:
        for kind, values in r["latencies"].items():
            lat.setdefault(kind, []).extend(values)
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
        started += r["started"]
        upgraded += r["upgraded"]
        halted_seen += r["halted_seen"]
        retried += r["retried"]
        gen_cpu += r["cpu"]
    out: dict[str, object] = {
        "scenario": label, "release": release, "nodes": args.nodes, "wall_seconds": round(wall, 1),
        "requests": {k: len(v) for k, v in lat.items()},
        "p50_ms": {k: round(quantile(v, 0.5) * 1000, 2) for k, v in lat.items()},
        "p99_ms": {k: round(quantile(v, 0.99) * 1000, 2) for k, v in lat.items()},
        "all_p99_ms": round(quantile([x for v in lat.values() for x in v], 0.99) * 1000, 2),
        "rps": round(sum(len(v) for v in lat.values()) / wall, 1),
        "errors": errors, "reports_retried": retried, "hub_cpu_percent": round(100 * cpu / wall, 1),
        "hub_rss_mib": round(mem.get("VmRSS", 0), 1), "hub_peak_rss_mib": round(mem.get("VmHWM", 0), 1),
        "generator_cpu_percent": round(100 * gen_cpu / wall, 1), "counts": final["counts"],
        "halt": final["halt"], "generators": len(results),
    }
    if bad and final["halt"] is not None:
        # the hub's own halt time (its clock is this machine's), on the simulated clock
        halted_at = sim0 + (float(final["halt"]["at"]) - real0) * args.speed  # type: ignore[index]
    if bad:
        out["started_before_halt"] = sum(1 for t in started if halted_at is None or t <= halted_at)
        out["started_after_halt"] = sum(1 for t in started if halted_at is not None and t > halted_at)
        out["halted_after_sim_seconds"] = None if halted_at is None else round(halted_at - sim0, 1)
        out["admitted_but_halted"] = halted_seen
    else:
        done = len(upgraded) == args.nodes
        out["all_upgraded"] = done
        out["time_to_100_percent_sim_seconds"] = round(max(upgraded) - sim0, 1) if done else None
        out["hub_saw_100_percent_at_sim_seconds"] = None if full_at is None else round(full_at - sim0, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes-of", help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--speed", type=float, default=2.0, help="simulated seconds per real second")
    parser.add_argument("--ramp", type=float, default=300.0, help="simulated seconds from 0 to 100 %%")
    parser.add_argument("--interval", type=float, default=120.0, help="simulated seconds between polls")
    parser.add_argument("--min-reports", type=int, default=100)
    parser.add_argument("--after-halt", type=float, default=20.0, help="real seconds polled after a halt")
    parser.add_argument("--max-seconds", type=float, default=360.0, help="real seconds a scenario may run")
    parser.add_argument("--only", choices=("good", "bad"))
    args = parser.parse_args()
    if args.nodes_of:
        nodes_of(json.loads(args.nodes_of))
        return 0
    if not 1 <= args.nodes <= 20_000:
        parser.error("--nodes: 1 to 20,000")
    print(f"machine: {platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
          f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        work = Path(tmp)
        for label, release, bad in (("good", "zos:2.0.0.flist", False), ("bad", "zos:2.1.0.flist", True)):
            if args.only and args.only != label:
                continue
            result = scenario(args, label, work, release, bad)
            print(json.dumps(result), flush=True)
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
