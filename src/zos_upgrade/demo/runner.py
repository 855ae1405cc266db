"""``zos-upgrade demo``: the whole flow in a temporary sandbox, with real processes, in under a minute.

1. a hub on loopback; release 1.0.0 of the sample node packed into it, ``latest`` -> 1.0.0;
2. a real supervisord for the node; ``zos-upgrade daemon --once`` first-installs 1.0.0;
3. release 1.1.0 (web changed, a file added, one removed, a ``migrate`` hook), ``latest`` moved; the
   daemon (running, checking every second) upgrades; both services answer 1.1.0, the data is migrated;
4. a broken 1.2.0 (its worker dies at start), ``latest`` moved; the daemon's upgrade fails probation
   and rolls back: both services answer 1.1.0 again;
5. a forged release 9.9.9 (a compromised hub moves the link and signs metadata with a key of its
   own; the release's pre-copy hook would plant a file): refused by TUF, nothing changes;
6. the daemon is stopped with SIGTERM (exit 0) and a summary table is printed.

Every release is signed with TUF (``demo/signing.py``): the node pins the repository's root and
believes only what its metadata sign.

Every check is made from outside, as an operator would (HTTP to the service, its status file, the
daemon's ``status.json``); the demo exits 0 only if all of them held.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from zos_upgrade.demo.processes import (
    Children,
    DemoFailed,
    free_port,
    supervisord_config,
    wait_for,
    wait_for_port,
    zos_upgrade_cmd,
)
from zos_upgrade.demo.sample import SampleNode, build_release
from zos_upgrade.demo.signing import DemoSigner, forge_release
from zos_upgrade.fsutil import atomic_symlink

__all__ = ["run_demo"]

REPO = "demo"
FLIST = "zos-demo"
LINK = f"{REPO}/{FLIST}:latest.fl"
STATE_DIR = "/var/cache/modules/upgrade"
PINNED = f"/etc/zos-upgrade/trust/{REPO}.root.json"
FORGED_MARK = "etc/ssh/forged-by-the-hub"


@dataclass
class Step:
    title: str
    from_version: str = ""
    to_version: str = ""
    result: str = ""
    seconds: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sandbox:
    base: Path
    hub_root: Path
    blocks: Path
    releases: Path
    node: SampleNode
    config: Path
    log_dir: Path
    hub_port: int
    signer: DemoSigner | None = None

    @property
    def state_dir(self) -> Path:
        return self.node.root / STATE_DIR.lstrip("/")

    def status(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "status.json").read_text()))

    def daemon_log(self) -> Path:
        return self.log_dir / "daemon.log"


def _make_sandbox(base: Path) -> Sandbox:
    node_root = base / "node"
    for sub in ("hub", "blocks", "releases", "logs", "node/run", "node/etc/supervisor/conf.d"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    hub_port, web_port = free_port(), free_port()
    # the release engineer's TUF repository; the node pins its first root (what `trust init` prints)
    signer = DemoSigner(base / "tuf", base / "hub", REPO)
    pinned = node_root / PINNED.lstrip("/")
    pinned.parent.mkdir(parents=True)
    shutil.copyfile(signer.root_file, pinned)
    sb = Sandbox(base=base, hub_root=base / "hub", blocks=base / "blocks", releases=base / "releases",
                 node=SampleNode(root=node_root, web_port=web_port), config=base / "zos-upgrade.toml",
                 log_dir=base / "logs", hub_port=hub_port, signer=signer)
    sb.config.write_text(f"""\
[node]
root = "{node_root}"
state_dir = "{STATE_DIR}"

[source]
hub = "http://127.0.0.1:{hub_port}"
flist = "{LINK}"
interval = 1
jitter = 0

[trust]
root = "{PINNED}"

[supervisor]
kind = "supervisord"
socket = "/run/supervisor.sock"
include_dir = "/etc/supervisor/conf.d"

[upgrade]
self_update = false
probation = 2
hook_timeout = 30
stop_timeout = 5
""")
    return sb


def _publish(sb: Sandbox, version: str) -> int:
    """Pack release ``version`` into the hub and move ``latest`` to it; the release's size in bytes."""
    from zos_upgrade.flist.pack import pack
    from zos_upgrade.flist.stores import open_store

    tree = build_release(sb.releases / version, version, sb.node)
    name = f"{FLIST}:{version}.fl"
    (sb.hub_root / REPO).mkdir(parents=True, exist_ok=True)

    async def run() -> None:
        store = open_store(f"dir://{sb.blocks}")
        try:
            await pack(tree, sb.hub_root / REPO / name, store, tags={"version": version})
        finally:
            await store.aclose()

    asyncio.run(run())
    atomic_symlink(name, sb.hub_root / REPO / f"{FLIST}:latest.fl")
    if sb.signer is not None:
        sb.signer.sign(name, sb.hub_root / REPO / name, f"{FLIST}:latest.fl")
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())


def _web(sb: Sandbox) -> dict[str, Any]:
    url = f"http://127.0.0.1:{sb.node.web_port}/"
    with urllib.request.urlopen(url, timeout=2) as reply:
        return dict(json.loads(reply.read()))


def _worker(sb: Sandbox) -> dict[str, Any]:
    return dict(json.loads((sb.node.root / "var/lib/demo/worker.status").read_text()))


def _services_answer(sb: Sandbox, version: str, *, since: float = 0.0) -> Callable[[], bool]:
    def check() -> bool:
        worker = _worker(sb)
        return bool(_web(sb)["version"] == version and worker["version"] == version
                    and worker["at"] > max(since, time.time() - 2))

    return check


def _transactions(sb: Sandbox) -> list[dict[str, Any]]:
    """The daemon's JSON log lines that report a transaction (applied or not)."""
    out: list[dict[str, Any]] = []
    lines: list[str] = []
    for path in (sb.daemon_log(), sb.log_dir / "daemon-run.log"):
        if path.exists():
            lines += path.read_text(errors="replace").splitlines()
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("msg") in ("transaction applied", "transaction did not apply"):
            out.append(doc)
    return out


def _fill(step: Step, sb: Sandbox, to_version: str) -> None:
    for doc in reversed(_transactions(sb)):
        if doc.get("to_version") == to_version:
            step.report = doc
            step.from_version = str(doc.get("from_version") or "-")
            return


def _run_once(sb: Sandbox) -> subprocess.CompletedProcess[bytes]:
    with open(sb.daemon_log(), "ab") as log:
        return subprocess.run(zos_upgrade_cmd("daemon", "--config", str(sb.config), "--once"),
                              stdout=log, stderr=subprocess.STDOUT, timeout=90, check=False)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def _summary(steps: list[Step], total: float) -> list[Table]:
    """Two tables that fit 80 columns: what each step did, and where its time went."""
    table = Table(title=f"zos-upgrade demo ({total:.1f} s)")
    for col in ("step", "versions", "result", "downloaded", "release", "blocks new/reused", "time"):
        table.add_column(col, no_wrap=True)
    for s in steps:
        rep = s.report
        fetched, reused = rep.get("blocks_fetched"), rep.get("blocks_from_cache")
        table.add_row(
            s.title, f"{s.from_version or '-'} -> {s.to_version}", s.result,
            _size(rep.get("bytes_downloaded")), _size(rep.get("release_bytes")),
            "-" if fetched is None else f"{fetched}/{reused}", f"{s.seconds:.1f} s",
        )
    phased = [s for s in steps if isinstance(s.report.get("phases"), dict) and s.report["phases"]]
    phases = Table(title="time per phase of the transaction (s)")
    phases.add_column("phase", no_wrap=True)
    for s in phased:
        phases.add_column(f"{s.title} {s.to_version}", justify="right", no_wrap=True)
    names: list[str] = []
    for s in phased:
        names += [n for n in s.report["phases"] if n not in names]
    for name in names:
        phases.add_row(name, *(f"{s.report['phases'].get(name, 0.0):.2f}" for s in phased))
    return [table, phases] if phased else [table]


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(*, keep: bool = False, console: Console | None = None) -> int:
    """Run the demo; 0 when every step happened as described, 1 otherwise. Cleans up everything."""
    out = console or Console()
    # the demo tells its own story; the packer's per-release log lines would interleave with it
    logging.getLogger("zos_upgrade.flist").setLevel(logging.WARNING)
    if not out.is_terminal:
        out = Console(width=120)  # a log file or a pipe: do not squeeze the tables into 80 columns
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    base = Path(tempfile.mkdtemp(prefix="zu-demo-", dir="/tmp"))  # short: unix socket paths are limited
    sb = _make_sandbox(base)
    children = Children(sb.log_dir)
    steps: list[Step] = []
    started = time.monotonic()
    try:
        _demo(sb, children, steps, out)
        for table in _summary(steps, time.monotonic() - started):
            out.print(table)
        out.print("[bold green]demo passed[/]: upgraded 1.0.0 -> 1.1.0, refused broken 1.2.0 by rollback, "
                  "refused forged 9.9.9 by TUF")
        return 0
    except DemoFailed as exc:
        for table in _summary(steps, time.monotonic() - started) if steps else []:
            out.print(table)
        out.print(f"[bold red]demo failed[/]: {exc}")
        out.print(f"logs: {sb.log_dir}" if keep else "run with --keep to inspect the sandbox's logs")
        return 1
    except KeyboardInterrupt:
        out.print("[yellow]demo interrupted; cleaning up[/]")
        return 130
    finally:
        children.stop_all()
        signal.signal(signal.SIGTERM, previous)
        if keep:
            out.print(f"sandbox kept in {base}")
        else:
            _remove(base, out)


def _remove(base: Path, out: Console) -> None:
    """Delete the sandbox; say so if something keeps it alive (never leave it silently)."""
    for _ in range(3):
        shutil.rmtree(base, ignore_errors=True)
        if not base.exists():
            return
        time.sleep(0.5)  # a child still writing its last log line
    out.print(f"[yellow]could not remove the sandbox {base}[/]")


def _timed_step(steps: list[Step], title: str, to_version: str) -> Step:
    step = Step(title=title, to_version=to_version)
    steps.append(step)
    return step


def _demo(sb: Sandbox, children: Children, steps: list[Step], out: Console) -> None:
    # a story line is short enough for 80 columns and printed whole (soft_wrap: rich never cuts it);
    # what explains it goes on indented lines below, wrapped at words
    def say(line: str) -> None:
        out.print(line, soft_wrap=True)

    def detail(text: str) -> None:
        out.print(Padding(Text(text), (0, 0, 0, 4)))

    say(f"sandbox {sb.base}")
    hub_port = sb.hub_port
    hub = children.start("hub", zos_upgrade_cmd("hub", "serve", "--root", str(sb.hub_root), "--blocks",
                                                str(sb.blocks), "--port", str(hub_port)))
    wait_for_port(hub_port, hub)
    say(f"[green]✓[/] hub serving on 127.0.0.1:{hub_port}")
    sock, include = sb.node.root / "run/supervisor.sock", sb.node.root / "etc/supervisor/conf.d"
    conf = sb.base / "supervisord.conf"
    conf.write_text(supervisord_config(sock, sb.log_dir, include))
    children.start_supervisord(conf, sock, include)
    say("[green]✓[/] supervisord running the (empty) node")

    # 1.0.0: first install by the daemon itself
    t0 = time.monotonic()
    size = _publish(sb, "1.0.0")
    say(f"[green]✓[/] release 1.0.0 packed into the hub ({_size(size)}), latest -> 1.0.0")
    step = _timed_step(steps, "first install", "1.0.0")
    proc = _run_once(sb)
    step.seconds = time.monotonic() - t0
    _fill(step, sb, "1.0.0")
    if proc.returncode != 0:
        raise DemoFailed(f"daemon --once (first install) exited {proc.returncode}; see {sb.daemon_log()}")
    wait_for(_services_answer(sb, "1.0.0"), 15, "web and worker to answer 1.0.0")
    step.result = "installed"
    say(f"[green]✓[/] daemon --once installed 1.0.0; services answer: web {_web(sb)['version']}, "
        f"worker {_worker(sb)['version']}")

    # 1.1.0: the running daemon notices the moved link and upgrades
    daemon = children.start("daemon-run", zos_upgrade_cmd("daemon", "--config", str(sb.config)))
    t0 = time.monotonic()
    _publish(sb, "1.1.0")
    say("[green]✓[/] release 1.1.0 packed, latest -> 1.1.0")
    detail("web changed, NEWS added, legacy.txt removed, a migrate hook")
    step = _timed_step(steps, "upgrade", "1.1.0")
    wait_for(lambda: sb.status().get("current_version") == "1.1.0", 45, "the daemon to upgrade to 1.1.0",
             daemon)
    wait_for(_services_answer(sb, "1.1.0"), 15, "web and worker to answer 1.1.0")
    step.seconds = time.monotonic() - t0
    web = _web(sb)
    node = sb.node.root
    if web.get("settings_format") != "json" or not web.get("greeting"):
        raise DemoFailed(f"web 1.1.0 does not serve the migrated settings: {web}")
    if (node / "opt/demo/legacy.txt").exists() or not (node / "opt/demo/NEWS").exists():
        raise DemoFailed("1.1.0's file changes are not on the node (legacy.txt removed, NEWS added)")
    _fill(step, sb, "1.1.0")
    step.result = "upgraded"
    say(f"[green]✓[/] daemon upgraded to 1.1.0: web answers {web['version']}, worker answers "
        f"{_worker(sb)['version']}")
    detail(f"settings migrated to {web['settings_format']}: {web['greeting']!r}")

    # 1.2.0: broken on purpose; the upgrade must roll back to 1.1.0
    t0 = time.monotonic()
    _publish(sb, "1.2.0")
    say("[green]✓[/] broken release 1.2.0 packed (its worker dies at start), latest -> 1.2.0")
    step = _timed_step(steps, "broken release", "1.2.0")

    def rolled_back() -> bool:
        st = sb.status()
        return bool(st.get("last_result") == "rolled-back"
                    and (st.get("last_upgrade") or {}).get("to") == "1.2.0")

    wait_for(rolled_back, 45, "the daemon to try 1.2.0 and roll back", daemon)
    status = sb.status()
    if status.get("current_version") != "1.1.0":
        raise DemoFailed(f"after the rollback the daemon reports {status.get('current_version')}, not 1.1.0")
    wait_for(_services_answer(sb, "1.1.0", since=time.time()), 15, "web and worker to answer 1.1.0 again")
    step.seconds = time.monotonic() - t0
    _fill(step, sb, "1.2.0")
    step.from_version = "1.1.0"
    step.result = "rolled back"
    say(f"[green]✓[/] 1.2.0 failed and rolled back: web answers {_web(sb)['version']}, worker answers "
        f"{_worker(sb)['version']}")
    detail(f"why: {status.get('last_error')}")

    _forged_step(sb, steps, daemon, say, detail)

    daemon.send_signal(signal.SIGTERM)
    try:
        code = daemon.wait(20)
    except subprocess.TimeoutExpired:
        raise DemoFailed("the daemon did not stop within 20 s of SIGTERM") from None
    if code != 0:
        raise DemoFailed(f"the daemon exited {code} on SIGTERM, expected 0")
    say("[green]✓[/] daemon stopped by SIGTERM (exit 0)")



def _trust_error(sb: Sandbox) -> dict[str, Any] | None:
    path = sb.state_dir / "trust" / f"{REPO}.status.json"
    try:
        error = json.loads(path.read_text()).get("error")
    except (OSError, ValueError):
        return None
    return error if isinstance(error, dict) else None


def _forged_step(sb: Sandbox, steps: list[Step], daemon: subprocess.Popen[bytes],
                 say: Callable[[str], None], detail: Callable[[str], None]) -> None:
    """A compromised hub: its own release 9.9.9 behind the link, metadata signed with its own key."""
    from zos_upgrade.flist.pack import pack
    from zos_upgrade.flist.stores import open_store

    t0 = time.monotonic()
    step = _timed_step(steps, "forged release", "9.9.9")
    tree = build_release(sb.releases / "9.9.9", "1.1.0", sb.node)  # 1.1.0's files, relabelled
    (tree / "opt/demo/VERSION").write_text("9.9.9\n")
    (tree / FORGED_MARK).parent.mkdir(parents=True, exist_ok=True)
    (tree / FORGED_MARK).write_text("ssh-ed25519 AAAA the-attacker\n")
    name = f"{FLIST}:9.9.9.fl"

    async def run() -> None:
        store = open_store(f"dir://{sb.blocks}")
        try:
            await pack(tree, sb.hub_root / REPO / name, store, tags={"version": "9.9.9"})
        finally:
            await store.aclose()

    asyncio.run(run())
    atomic_symlink(name, sb.hub_root / REPO / f"{FLIST}:latest.fl")
    assert sb.signer is not None
    forge_release(sb.signer.served, sb.signer.served, name, sb.hub_root / REPO / name, f"{FLIST}:latest.fl")
    say("[green]✓[/] forged 9.9.9: the hub moves latest, signs metadata with its own key")
    wait_for(lambda: (_trust_error(sb) or {}).get("type") == "ForgedMetadata", 30,
             "the daemon to refuse the forged metadata", daemon)
    if (sb.node.root / FORGED_MARK).exists() or sb.status().get("current_version") != "1.1.0":
        raise DemoFailed("the forged release 9.9.9 reached the node")
    wait_for(_services_answer(sb, "1.1.0"), 15, "web and worker to still answer 1.1.0")
    step.seconds = time.monotonic() - t0
    step.from_version = "1.1.0"
    step.result = "refused"
    error = _trust_error(sb) or {}
    say(f"[green]✓[/] forged 9.9.9 refused by TUF ({error.get('type')}): the node still runs 1.1.0")
    detail(f"why: {error.get('attack')}: {error.get('message')}")
