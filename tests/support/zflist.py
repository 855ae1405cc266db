"""The real ``zflist`` driven from tests: one command per process, JSON answers, its own mountpoint."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["Zflist", "ZflistFailed"]


class ZflistFailed(AssertionError):
    """zflist answered ``success: false`` or exited non-zero."""


class Zflist:
    """The real zflist with a private work folder (``ZFLIST_MNT``) and a 0-db backend."""

    def __init__(self, binary: Path, work: Path, zdb_port: int, namespace: str = "default") -> None:
        self.binary = binary
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.backend = {"host": "127.0.0.1", "port": zdb_port, "namespace": namespace}
        self.env = {
            **os.environ, "ZFLIST_MNT": str(work), "ZFLIST_JSON": "1",
            # blocks are uploaded to (and downloaded from) this backend
            "ZFLIST_BACKEND": json.dumps(self.backend),
        }

    def run(self, *args: str | Path) -> Any:
        """One zflist command; its JSON ``response``."""
        done = subprocess.run([str(self.binary), *map(str, args)], env=self.env, capture_output=True,
                              timeout=300, check=False)
        lines = [line for line in done.stdout.decode(errors="replace").splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise ZflistFailed(f"zflist {' '.join(map(str, args))}: exit {done.returncode}: "
                               f"{done.stdout[-2000:]!r} {done.stderr[-2000:]!r}")
        answer = json.loads(lines[-1])
        if not answer.get("success"):
            raise ZflistFailed(f"zflist {' '.join(map(str, args))}: {answer.get('error')}")
        return answer.get("response")

    def pack(self, src: Path, out: Path) -> None:
        """``init``, ``metadata backend``, ``putdir src /``, ``commit out``, ``close``."""
        self.run("init")
        self.run("metadata", "backend", "--host", "127.0.0.1", "--port", str(self.backend["port"]),
                 "--namespace", str(self.backend["namespace"]))
        self.run("putdir", src, "/")
        self.run("commit", out)
        self.run("close")

    def opened(self, flist: Path) -> OpenFlist:
        return OpenFlist(self, flist)


class OpenFlist:
    """``with zf.opened(path) as f:`` opens the flist, closes it at the end."""

    def __init__(self, zf: Zflist, flist: Path) -> None:
        self.zf, self.flist = zf, flist

    def __enter__(self) -> OpenFlist:
        self.zf.run("open", self.flist)
        return self

    def __exit__(self, *_: object) -> None:
        self.zf.run("close")

    def find(self) -> Any:
        return self.zf.run("find")

    def check(self) -> Any:
        return self.zf.run("check")

    def stat(self, path: str) -> Any:
        return self.zf.run("stat", path)

    def ls(self, path: str) -> Any:
        return self.zf.run("ls", path)

    def get(self, path: str, out: Path) -> None:
        self.zf.run("get", path, out)
