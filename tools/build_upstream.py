#!/usr/bin/env python3
"""Build the real 0-OS tools the suite tests against: ``zdb`` (0-db), ``zflist`` (0-flist with
c-capnproto's runtime) and the real 0-hub in a venv of its own.

Sources come from the archives in ``<checkout>/../shared/upstream/`` (or ``--archives DIR``), each
named ``<project>-<commit[:12]>.tar.gz``; when one is absent the same pinned commit is downloaded
from GitHub. Every product lands in ``.cache/upstream/<project>-<commit[:12]>/`` with a ``.built``
stamp, so a second run only checks the stamps. ``.cache/upstream/tools.json`` tells the test
fixtures where the products are.

Standard library only: ``make tools`` runs it before anything else is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
CACHE = CHECKOUT / ".cache" / "upstream"
DEFAULT_ARCHIVES = CHECKOUT.parent / "shared" / "upstream"

# Debian packages the three C builds need (verified list of ../shared/upstream/README.md)
DEBIAN_PACKAGES = [
    "build-essential", "libsnappy-dev", "zlib1g-dev", "libtar-dev", "libb2-dev", "libjansson-dev",
    "libhiredis-dev", "libsqlite3-dev", "libssl-dev", "libcurl4-openssl-dev", "pkg-config",
]


@dataclass(frozen=True)
class Pin:
    name: str
    repo: str
    commit: str

    @property
    def key(self) -> str:
        return f"{self.name}-{self.commit[:12]}"


ZDB = Pin("0-db", "threefoldtech/0-db", "1630159b08536b05f98b0909c26f8869109368bd")
FLIST = Pin("0-flist", "threefoldtech/0-flist", "30f45c699f04c836436030c9a82778fd78f03a27")
CAPNP = Pin("c-capnproto", "opensourcerouting/c-capnproto", "0650ccbf1780eda124b7d7cc0913c1c577c1d420")
HUB = Pin("0-hub", "threefoldtech/0-hub", "04bda34e964ff17223d9521dcd6beda62b3a70d9")


def say(msg: str) -> None:
    print(f"[tools] {msg}", flush=True)


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    say(" ".join(cmd) + (f"   (in {cwd.name})" if cwd else ""))
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL if quiet() else None)


def quiet() -> bool:
    return os.environ.get("TOOLS_VERBOSE", "") == ""


def system_deps() -> None:
    """As root with apt, install the Debian build packages that are missing; else name them."""
    missing = [p for p in DEBIAN_PACKAGES
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0] \
        if shutil.which("dpkg") else []
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        return
    sys.exit(f"[tools] missing build packages: apt-get install {' '.join(missing)}")


def fetch_archive(pin: Pin, archives: Path) -> Path:
    """The archive of ``pin``: from the archives folder, or downloaded from GitHub once."""
    local = archives / f"{pin.key}.tar.gz"
    if local.is_file():
        return local
    downloaded = CACHE / "archives" / f"{pin.key}.tar.gz"
    if not downloaded.is_file():
        url = f"https://github.com/{pin.repo}/archive/{pin.commit}.tar.gz"
        say(f"{local} absent: downloading {url}")
        downloaded.parent.mkdir(parents=True, exist_ok=True)
        tmp = downloaded.with_suffix(".part")
        with urllib.request.urlopen(url, timeout=120) as answer, tmp.open("wb") as out:
            shutil.copyfileobj(answer, out)
        tmp.rename(downloaded)
    return downloaded


def unpack(pin: Pin, archives: Path) -> Path:
    """A fresh source tree of ``pin`` at ``.cache/upstream/<key>/src`` (one top folder, any name)."""
    dest = CACHE / pin.key / "src"
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    archive = fetch_archive(pin, archives)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        (top,) = Path(tmp).iterdir()  # 0-db/ in our archives, 0-db-<commit>/ from GitHub
        top.rename(dest)
    return dest


def built(pin: Pin, product: Path, build: Callable[[], None]) -> Path:
    """``product`` of ``pin``, built unless the stamp says it already was."""
    stamp = CACHE / pin.key / ".built"
    if stamp.is_file() and product.exists():
        return product
    started = time.monotonic()
    build()
    if not product.exists():
        sys.exit(f"[tools] {pin.key}: the build ran but {product} is missing")
    stamp.write_text(pin.commit + "\n")
    say(f"{pin.key}: built in {time.monotonic() - started:.1f} s")
    return product


def build_zdb(archives: Path, jobs: str) -> Path:
    product = CACHE / ZDB.key / "src" / "bin" / "zdb"

    def build() -> None:
        src = unpack(ZDB, archives)
        # its Makefiles take the revision from `git describe`: stop git at the cache, or it reports
        # the commit of the checkout around it
        env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(CACHE))
        run(["make", f"-j{jobs}", "release"], cwd=src, env=env)

    return built(ZDB, product, build)


def build_capnp(archives: Path) -> Path:
    """c-capnproto's runtime only: its autotools build needs a git submodule the archive lacks."""
    prefix = CACHE / CAPNP.key
    product = prefix / "lib" / "libcapnp_c.a"

    def build() -> None:
        src = unpack(CAPNP, archives)
        (prefix / "lib").mkdir(exist_ok=True)
        (prefix / "include").mkdir(exist_ok=True)
        objects = []
        for name in ("capn-malloc.c", "capn-stream.c", "capn.c"):
            obj = prefix / "lib" / name.replace(".c", ".o")
            run(["cc", "-O2", "-fPIC", "-Ilib", "-c", f"lib/{name}", "-o", str(obj)], cwd=src)
            objects.append(str(obj))
        run(["ar", "rcs", str(product), *objects])
        shutil.copy2(src / "lib" / "capnp_c.h", prefix / "include" / "capnp_c.h")

    return built(CAPNP, product, build)


def build_zflist(archives: Path, capnp_lib: Path, jobs: str) -> Path:
    product = CACHE / FLIST.key / "src" / "zflist" / "zflist"

    def build() -> None:
        src = unpack(FLIST, archives)
        prefix = capnp_lib.parent.parent
        # through the environment: on the make command line they would replace the Makefiles'
        # `CFLAGS +=` (and drop -fPIC) instead of adding to them
        env = dict(os.environ, CFLAGS=f"-I{prefix / 'include'}", LDFLAGS=f"-L{prefix / 'lib'}")
        run(["make", f"-j{jobs}"], cwd=src / "libflist", env=env)
        run(["make", "sl-release"], cwd=src / "zflist", env=env)

    # zflist links c-capnproto: a new capnp pin must rebuild it too
    stamp = CACHE / FLIST.key / ".capnp"
    if not stamp.is_file() or stamp.read_text().strip() != CAPNP.commit:
        (CACHE / FLIST.key / ".built").unlink(missing_ok=True)
    result = built(FLIST, product, build)
    stamp.write_text(CAPNP.commit + "\n")
    return result


def build_hub(archives: Path) -> tuple[Path, Path]:
    """The real 0-hub's source and a venv of its own with its pinned requirements plus requests."""
    src_dir = CACHE / HUB.key / "src"
    venv = CACHE / "0-hub-venv"
    python = venv / "bin" / "python"

    def build() -> None:
        src = unpack(HUB, archives)
        if venv.exists():
            shutil.rmtree(venv)
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "-q", "-r", str(src / "requirements.txt"), "requests"])

    stamp = venv / ".hub-commit"
    if not stamp.is_file() or stamp.read_text().strip() != HUB.commit:
        (CACHE / HUB.key / ".built").unlink(missing_ok=True)
    built(HUB, python, build)
    stamp.write_text(HUB.commit + "\n")
    return src_dir, python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archives", type=Path, default=DEFAULT_ARCHIVES,
                        help="folder of <project>-<commit12>.tar.gz archives (default: ../shared/upstream)")
    parser.add_argument("--jobs", default=str(os.cpu_count() or 1))
    args = parser.parse_args()
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    stamps = [CACHE / p.key / ".built" for p in (ZDB, FLIST, CAPNP, HUB)]
    if not all(s.is_file() for s in stamps):
        system_deps()
    zdb = build_zdb(args.archives, args.jobs)
    capnp = build_capnp(args.archives)
    zflist = build_zflist(args.archives, capnp, args.jobs)
    hub_src, hub_python = build_hub(args.archives)
    manifest = {
        "zdb": str(zdb), "zflist": str(zflist),
        "hub_src": str(hub_src / "python"), "hub_python": str(hub_python),
        "commits": {p.name: p.commit for p in (ZDB, FLIST, CAPNP, HUB)},
    }
    tmp = CACHE / "tools.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(CACHE / "tools.json")
    say(f"ready in {time.monotonic() - started:.1f} s: {CACHE / 'tools.json'}")


if __name__ == "__main__":
    main()
