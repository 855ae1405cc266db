"""The anchors: what our users would otherwise use to ship the same trees, server side and node side.

Each anchor publishes the version chain once (untimed) under one directory, ``srv/``, which a plain
``python -m http.server`` serves (OSTree's archive repo, casync's indexes and chunk store, the
tarball); rsync has a daemon of its own (:func:`rsyncd_config`). On the node side each anchor gives,
per version, a :class:`Step`: an untimed preparation (rsync's copy of the old tree) and the timed
command lines, run against the counting proxy's port, never the server's own.

* OSTree: ``ostree pull`` into a bare repo (the one holding the old commit, for an upgrade) and
  ``ostree checkout`` of the new commit into a new directory (hard links from the repo);
* casync: ``casync extract`` of the version's index over HTTP, ``--seed=`` the old tree for upgrades;
* rsync: ``rsync -a --delete`` from the daemon onto a copy of the old tree (or into an empty one);
* ``curl URL | tar -xzf -``: the first install only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .trees import Version

# command -> the Debian package that carries it
TOOLS = {"ostree": "ostree", "casync": "casync", "rsync": "rsync", "curl": "curl", "tar": "tar"}


def ensure_tools(tools: dict[str, str] = TOOLS) -> None:
    """Install the anchors' Debian packages that are missing (as root, through apt-get, like
    ``make system-deps``); another apt run holding the dpkg lock is waited for."""
    missing = sorted({pkg for cmd, pkg in tools.items() if shutil.which(cmd) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"missing anchors: apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    for _ in range(60):
        done = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if "lock" not in done.stderr:
            raise SystemExit(f"apt-get install {' '.join(missing)} failed:\n{done.stderr[-2000:]}")
        time.sleep(5)  # another helper's apt-get holds the dpkg lock
    raise SystemExit(f"apt-get install {' '.join(missing)}: the dpkg lock was never released")


def run(cmd: Sequence[str | Path], cwd: Path | None = None) -> None:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stderr[-2000:]}")


def shell(command: str) -> None:
    done = subprocess.run(command, shell=True, executable="/bin/bash", capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command} exited {done.returncode}:\n{done.stderr[-2000:]}")


@dataclass
class Step:
    """One version on one side: ``prepare`` is untimed, ``timed`` is what the figure measures,
    ``result`` the tree it leaves (checked against the published version)."""

    timed: Callable[[], None]
    result: Path
    prepare: Callable[[], None] | None = None


class Anchor:
    """An anchor's two halves: :meth:`publish` (server side, once) and :meth:`node` (one chain)."""

    name = ""
    route = "static"  # the counting proxy's route its node side is pointed at
    upgrades = True  # False: a first install only

    def publish(self, chain: Sequence[Version], srv: Path) -> None:
        raise NotImplementedError

    def node(self, work: Path, url: str) -> AnchorNode:
        raise NotImplementedError


class AnchorNode:
    """The node side of one chain in ``work`` (a fresh directory), against the proxy at ``url``."""

    def __init__(self, work: Path, url: str) -> None:
        self.work, self.url = work, url
        work.mkdir(parents=True)

    def step(self, version: Version, previous: Path | None) -> Step:
        raise NotImplementedError


class Ostree(Anchor):
    name = "ostree"

    def publish(self, chain: Sequence[Version], srv: Path) -> None:
        repo = srv / "ostree"
        run(["ostree", "init", f"--repo={repo}", "--mode=archive"])
        for v in chain:
            run(["ostree", "commit", f"--repo={repo}", f"--branch=v{v.version}", f"--tree=dir={v.path}"])

    def node(self, work: Path, url: str) -> AnchorNode:
        return _OstreeNode(work, url)


class _OstreeNode(AnchorNode):
    def step(self, version: Version, previous: Path | None) -> Step:
        repo, dest = self.work / "repo", self.work / version.version
        # a bare repo as root (files are checked out as hard links), bare-user otherwise
        mode = "bare" if os.geteuid() == 0 else "bare-user"

        def timed() -> None:
            if previous is None:
                run(["ostree", "init", f"--repo={repo}", f"--mode={mode}"])
                run(["ostree", "remote", "add", f"--repo={repo}", "--no-gpg-verify", "origin",
                     f"{self.url}/ostree"])
            run(["ostree", "pull", f"--repo={repo}", "origin", f"v{version.version}"])
            run(["ostree", "checkout", f"--repo={repo}", *([] if mode == "bare" else ["-U"]),
                 f"origin:v{version.version}", dest])
        return Step(timed, dest)


class Casync(Anchor):
    name = "casync"

    def publish(self, chain: Sequence[Version], srv: Path) -> None:
        (srv / "casync").mkdir()
        for v in chain:
            run(["casync", "make", f"--store={srv / 'casync/store'}", srv / f"casync/{v.version}.caidx",
                 v.path])

    def node(self, work: Path, url: str) -> AnchorNode:
        return _CasyncNode(work, url)


class _CasyncNode(AnchorNode):
    def step(self, version: Version, previous: Path | None) -> Step:
        dest = self.work / version.version
        seed: list[str] = [] if previous is None else [f"--seed={previous}"]
        cmd: list[str | Path] = ["casync", "extract", f"--store={self.url}/casync/store",
               f"{self.url}/casync/{version.version}.caidx", dest, *seed]
        return Step(lambda: run(cmd), dest)


class Rsync(Anchor):
    name = "rsync"
    route = "rsync"

    def publish(self, chain: Sequence[Version], srv: Path) -> None:
        self.config = srv / "rsyncd.conf"
        # run as root, the daemon would read the trees as nobody: keep this process's ids
        lines = ["use chroot = no", f"uid = {os.getuid()}", f"gid = {os.getgid()}", ""]
        for v in chain:
            lines += [f"[v{v.version}]", f"path = {v.path}", "read only = yes", ""]
        self.config.write_text("\n".join(lines))

    def daemon(self, port: int) -> list[str]:
        return ["rsync", "--daemon", "--no-detach", f"--config={self.config}", f"--port={port}",
                "--address=127.0.0.1"]

    def node(self, work: Path, url: str) -> AnchorNode:
        return _RsyncNode(work, url)


class _RsyncNode(AnchorNode):
    def step(self, version: Version, previous: Path | None) -> Step:
        dest = self.work / version.version
        cmd = ["rsync", "-a", "--delete", f"{self.url}/v{version.version}/", f"{dest}/"]

        def prepare() -> None:
            if previous is None:
                dest.mkdir()
            else:  # the node's tree is the old version; rsync brings it to the new one in place
                run(["cp", "-a", previous, dest])
        return Step(lambda: run(cmd), dest, prepare)


class CurlTar(Anchor):
    name = "curl | tar"
    upgrades = False

    def publish(self, chain: Sequence[Version], srv: Path) -> None:
        (srv / "tar").mkdir()
        first = chain[0]
        run(["tar", "-czf", srv / f"tar/{first.version}.tar.gz", "-C", first.path, "."])

    def node(self, work: Path, url: str) -> AnchorNode:
        return _CurlTarNode(work, url)


class _CurlTarNode(AnchorNode):
    def step(self, version: Version, previous: Path | None) -> Step:
        dest = self.work / version.version
        command = f"curl -sSf '{self.url}/tar/{version.version}.tar.gz' | tar -xzf - -C '{dest}'"
        return Step(lambda: shell(f"set -o pipefail; {command}"), dest, dest.mkdir)


ANCHORS: tuple[type[Anchor], ...] = (Ostree, Casync, Rsync, CurlTar)
