"""A sandbox node for tests, the daemon and the proof suite: node root, state dir, a real hub, releases.

``Sandbox(base)`` lays out ``base/{node,state,hub,blocks,src}``. ``pack(name, tree)`` writes a tree
described by a dict (path -> text/bytes/:class:`Exe`/:class:`Link`/:class:`Dir`) and packs it with the
flist layer into the hub storage (blocks into ``blocks/``, served by the hub at ``/blocks``).
``link(name, target)`` moves a symlink flist. ``serving_hub()`` starts ``zos-upgrade hub serve`` as a
subprocess on a free loopback port. :func:`service_release` builds the tree of a typical release:
tiny Python services that write ``<root>/run/<name>.version`` when they start and then stay up.

``python -m tests.support.node upgrade ...`` runs one upgrade (or ``recover``) in a child process, so
tests can SIGKILL it at a crash point (``ZOS_UPGRADE_CRASH_AT``). Exit codes: 0 committed, 1 failed
and rolled back, 2 failed and not rolled back, 3 RestartNeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import REPO, free_port, serving, zos_upgrade_cmd
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.hub.client import HubClient
from zos_upgrade.node.events import FListEvent
from zos_upgrade.sources import HubSource, Target
from zos_upgrade.supervisor import Supervisor
from zos_upgrade.upgrade import Flister, Upgrader, UpgradeReport

REPO_NAME = "tf-zos"
BINS_REPO = "tf-zos-bins"
# Paths a running node writes by itself: never part of a release, so never compared.
RUNTIME_DIRS = ("run", "tmp", "var")


@dataclass(frozen=True)
class Exe:
    """An executable file (mode 0755): a script, or the bytes of a built program."""

    text: str | bytes


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755


TreeSpec = Mapping[str, "str | bytes | Exe | Link | Dir"]


def write_tree(dest: Path, spec: TreeSpec) -> None:
    """Create ``dest`` holding exactly ``spec`` (parents made as needed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, value in spec.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, Dir):
            path.mkdir(mode=value.mode, exist_ok=True)
        elif isinstance(value, Link):
            os.symlink(value.target, path)
        elif isinstance(value, Exe):
            if isinstance(value.text, bytes):
                path.write_bytes(value.text)
            else:
                path.write_text(value.text)
            path.chmod(0o755)
        elif isinstance(value, bytes):
            path.write_bytes(value)
            path.chmod(0o644)
        else:
            path.write_text(value)
            path.chmod(0o644)


def tree_digest(root: Path, *, exclude: tuple[str, ...] = RUNTIME_DIRS) -> dict[str, str]:
    """path -> 'kind:mode:content-hash' for everything under ``root`` except the runtime dirs."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_base = base.relative_to(root).as_posix()
        if rel_base == ".":
            dirnames[:] = [d for d in dirnames if d not in exclude]
        for name in dirnames + filenames:
            full = base / name
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            mode = oct(st.st_mode & 0o7777)
            if full.is_symlink():
                out[rel] = f"link:{os.readlink(full)}"
            elif full.is_dir():
                out[rel] = f"dir:{mode}"
            else:
                out[rel] = f"file:{mode}:{hashlib.blake2b(full.read_bytes(), digest_size=16).hexdigest()}"
    return out


SERVICE_SCRIPT = """\
import os, sys, time
name, root = sys.argv[1], sys.argv[2]
version = open(os.path.join(root, "opt/app/VERSION")).read().strip()
os.makedirs(os.path.join(root, "run"), exist_ok=True)
with open(os.path.join(root, "run", name + ".version"), "w") as fh:
    fh.write(version)
if os.environ.get("CRASH") == "1":
    sys.exit(3)
while True:
    time.sleep(3600)
"""


def service_yaml(root: Path, name: str, *, crash: bool = False, oneshot: bool = False) -> str:
    env = "env:\n  CRASH: \"1\"\n" if crash else ""
    shot = "oneshot: true\n" if oneshot else ""
    return f"exec: {sys.executable} {root}/opt/app/service.py {name} {root}\n{shot}{env}"


def service_release(
    root: Path,
    version: str,
    *,
    services: tuple[str, ...] = ("alpha", "beta"),
    crash: tuple[str, ...] = (),
    extra: TreeSpec | None = None,
) -> dict[str, str | bytes | Exe | Link | Dir]:
    """The tree of a small release: VERSION, the service script, one zinit yaml per service."""
    tree: dict[str, str | bytes | Exe | Link | Dir] = {
        "opt/app/VERSION": version + "\n",
        "opt/app/service.py": SERVICE_SCRIPT,
    }
    for name in services:
        tree[f"etc/zinit/{name}.yaml"] = service_yaml(root, name, crash=name in crash)
    tree.update(extra or {})
    return tree


class Sandbox:
    """One node + one hub storage under ``base``; packs releases, runs the hub, builds Upgraders."""

    def __init__(self, base: Path, *, root: Path | None = None) -> None:
        self.base = base
        self.root = root or base / "node"
        self.state = base / "state"
        self.hub_root = base / "hub"
        self.blocks = base / "blocks"
        self.src = base / "src"
        for path in (self.root, self.state, self.hub_root / REPO_NAME, self.hub_root / BINS_REPO,
                     self.blocks, self.src):
            path.mkdir(parents=True, exist_ok=True)
        self.hub_url = ""

    def pack(self, name: str, tree: TreeSpec, *, repo: str = REPO_NAME, tags: Mapping[str, str] | None = None,
             blocks: Path | None = None) -> Path:
        """Pack ``tree`` as ``<hub>/<repo>/<name>`` (format by suffix: .fl v2, .flist v1); its blocks
        go to ``blocks`` (default: the store the hub serves), its ``tags`` into the flist."""
        src = self.src / f"{repo}-{name}"
        shutil.rmtree(src, ignore_errors=True)
        write_tree(src, tree)
        out = self.hub_root / repo / name
        asyncio.run(pack(src, out, DirStore(blocks or self.blocks), tags=tags or {}))
        return out

    def link(self, name: str, target: str, *, repo: str = REPO_NAME) -> None:
        link = self.hub_root / repo / name
        tmp = link.with_name(link.name + ".tmp-link")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)

    def expose_supervisor(self, socket_path: Path, include_dir: Path) -> None:
        """The node sees its supervisor at node paths (``/sup/supervisor.sock``, ``/sup/conf.d``), as
        on a real node; a daemon config names those."""
        (self.root / "sup").mkdir()
        os.symlink(socket_path, self.root / "sup/supervisor.sock")
        os.symlink(include_dir, self.root / "sup/conf.d")

    @contextlib.contextmanager
    def serving_hub(self, config: str | None = None) -> Iterator[str]:
        """The hub over this sandbox's storage; ``config``: the text of its TOML config file."""
        port = free_port()
        cmd = zos_upgrade_cmd("hub", "serve", "--root", str(self.hub_root), "--blocks", str(self.blocks),
                              "--port", str(port))
        if config is not None:
            path = self.base / "hub.toml"
            path.write_text(config)
            cmd += ["--config", str(path)]
        with serving(cmd, port, cwd=REPO):
            self.hub_url = f"http://127.0.0.1:{port}"
            try:
                yield self.hub_url
            finally:
                self.hub_url = ""

    def hub_client(self) -> HubClient:
        return HubClient(self.hub_url, cache_dir=self.state / "flists")

    def upgrader(self, supervisor: Supervisor, **options: object) -> Upgrader:
        defaults: dict[str, object] = {"probation": 0.3, "start_timeout": 10.0, "hook_timeout": 10.0,
                                       "stop_timeout": 2.0}
        defaults.update(options)
        return Upgrader(self.root, self.state, Flister(self.state), supervisor,
                        **defaults)  # type: ignore[arg-type]

    def version_file(self, service: str) -> str:
        path = self.root / "run" / f"{service}.version"
        return path.read_text() if path.exists() else ""

    def wait_version(self, service: str, version: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.version_file(service) == version:
                return version
            time.sleep(0.05)
        return self.version_file(service)


def leftovers(box: Sandbox) -> list[str]:
    """Temp files, ``.zu-new`` files, backups or a journal that a finished transaction must not leave."""
    found = [str(p) for p in box.root.rglob("*") if ".zu-" in p.name]
    backup = box.state / "backup"
    if backup.exists() and any(backup.rglob("*")):
        found.append(str(backup))
    if (box.state / "journal.json").exists():
        found.append("journal.json")
    return found


async def event_for(hub: HubClient, fqdn: str) -> FListEvent:
    """The FListEvent a watcher would emit for ``fqdn`` (its /light info)."""
    repo = fqdn.split("/")[0]
    return FListEvent(repo, await hub.info(fqdn), hub)


async def install_hub_flist(upgrader: Upgrader, hub: HubClient, fqdn: str,
                            target: Target = "boot") -> UpgradeReport:
    """What the daemon does with a hub flist: read its /light (as a watcher would), let the
    HubSource download and check its resolved target, and let the Upgrader install that."""
    source = HubSource(hub, upgrader.flister.downloads_dir)
    return await upgrader.install_from(source, await event_for(hub, fqdn), target)


# ------------------------------------------------------------------ child-process entry point


async def _child(args: argparse.Namespace) -> int:
    from zos_upgrade.supervisor.supervisord import SupervisordClient
    from zos_upgrade.supervisor.zinit import ZinitClient
    from zos_upgrade.upgrade import RestartNeeded, RollbackIncomplete, UpgradeFailed

    root, state = Path(args.root), Path(args.state)
    sup: Supervisor
    if args.zinit:
        sup = ZinitClient(args.socket, root=root)
    else:
        sup = SupervisordClient(args.socket, include_dir=args.include)
    async with HubClient(args.hub, cache_dir=state / "flists") as hub:
        upgrader = Upgrader(root, state, Flister(state), sup, probation=args.probation,
                            start_timeout=10.0, hook_timeout=10.0, stop_timeout=2.0,
                            self_update=args.self_update)
        try:
            if args.action == "recover":
                print(json.dumps({"recovered": await upgrader.recover()}), flush=True)
                return 0
            await upgrader.recover()
            report = await install_hub_flist(upgrader, hub, args.to)
            print(json.dumps({"committed": report.to_version}), flush=True)
            return 0
        except RestartNeeded:
            return 3
        except UpgradeFailed as exc:
            print(json.dumps({"failed": exc.reason, "step": exc.step}), flush=True)
            return 2 if isinstance(exc, RollbackIncomplete) else 1


def child_command(sandbox: Sandbox, action: str, *, socket: Path, include: Path | None = None, to: str = "",
                  zinit: bool = False, crash_at: str | None = None, probation: float = 0.3,
                  self_update: bool = True) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of an ``upgrade``/``recover`` child (for callers that start
    it themselves, e.g. to SIGKILL it after a delay)."""
    cmd = [sys.executable, "-m", "tests.support.node", action, "--root", str(sandbox.root),
           "--state", str(sandbox.state), "--hub", sandbox.hub_url, "--socket", str(socket),
           "--probation", str(probation), "--to", to]
    if include is not None:
        cmd += ["--include", str(include)]
    if zinit:
        cmd.append("--zinit")
    if not self_update:
        cmd.append("--no-self-update")
    env = {k: v for k, v in os.environ.items() if k != "ZOS_UPGRADE_CRASH_AT"}
    if crash_at:
        env["ZOS_UPGRADE_CRASH_AT"] = crash_at
    return cmd, env


def run_child(sandbox: Sandbox, action: str, *, socket: Path, include: Path | None = None, to: str = "",
              zinit: bool = False, crash_at: str | None = None, probation: float = 0.3,
              self_update: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``upgrade``/``recover`` in a child process (optionally crashing at a named point)."""
    cmd, env = child_command(sandbox, action, socket=socket, include=include, to=to, zinit=zinit,
                             crash_at=crash_at, probation=probation, self_update=self_update)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def main() -> None:
    parser = argparse.ArgumentParser(prog="tests.support.node")
    parser.add_argument("action", choices=("upgrade", "recover"))
    parser.add_argument("--root", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--hub", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--include", default="")
    parser.add_argument("--to", default="")
    parser.add_argument("--zinit", action="store_true")
    parser.add_argument("--probation", type=float, default=0.3)
    parser.add_argument("--no-self-update", dest="self_update", action="store_false")
    args = parser.parse_args()
    from zos_upgrade.log import setup_logging

    setup_logging("json")
    sys.exit(asyncio.run(_child(args)))


if __name__ == "__main__":
    main()
