"""`make dist`: the one-file executable, the wheel and sdist, and the Debian package, into dist/.

    python packaging/build.py all               # everything (what `make dist` runs)
    python packaging/build.py exe [--out F]     # dist/zos-upgrade only
    python packaging/build.py stamp EXE --version V [--out F]   # a copy stamped as another version
    python packaging/build.py python            # dist/*.whl and dist/*.tar.gz
    python packaging/build.py deb [--exe F]     # dist/zos-upgrade_<version>_<arch>.deb

The version built is the package's (pyproject.toml) unless ZOS_UPGRADE_BUILD_VERSION says another;
the commit is `git describe --always --dirty --tags` (``unknown`` outside a git checkout). Both are
what `--version` prints. Nothing here touches the network: the build tools (PyInstaller, build,
setuptools) come from the `dist` extra, installed once. PyInstaller keeps its analysis in
build/pyinstaller, so a rebuild after a small change reuses it (docs/releasing.md has the timings).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "dist"
WORK = REPO / "build"
PACKAGING = REPO / "packaging"
BUILD_FILE = REPO / "src" / "zos_upgrade" / "_build.json"  # the wheel's and sdist's stamp

sys.path.insert(0, str(REPO / "src"))
from zos_upgrade import write_stamp  # noqa: E402  (the stamp format lives with its reader)

# what the executable must carry that PyInstaller cannot see from the imports: modules imported by
# name at run time, and the package data (flist.capnp) loaded through importlib.resources
_PYINSTALLER_ARGS = (
    "--onefile", "--noconfirm", "--log-level", "WARN", "--name", "zos-upgrade",
    "--collect-submodules", "zos_upgrade", "--collect-data", "zos_upgrade",
    # supervisor's XML-RPC client pieces the supervisord back-end uses; capnp's own schemas
    "--collect-submodules", "supervisor", "--collect-data", "capnp",
    "--exclude-module", "tkinter", "--exclude-module", "pytest",
    # test and benchmark tools the dev venv holds that some optional import could drag in (botocore's
    # 1,978 data files alone made the program 64 MiB and its start-up 8-14x the venv's): a node never
    # runs them
    *(arg for mod in ("boto3", "botocore", "s3transfer", "moto", "minio", "selenium", "hypothesis",
                      "mypy", "IPython") for arg in ("--exclude-module", mod)),
)

# (path in the package, file in packaging/, mode): what the Debian package installs
_DEB_FILES = (
    ("etc/zos-upgrade/config.toml.example", "config.toml.example", 0o644),
    ("lib/systemd/system/zos-upgrade.service", "systemd/zos-upgrade.service", 0o644),
    ("usr/share/zos-upgrade/supervisord/upgrade.conf", "supervisord/upgrade.conf", 0o644),
    ("usr/share/zos-upgrade/zinit/upgrade.yaml", "zinit/upgrade.yaml", 0o644),
)
PROGRAM = "bin/zos-upgrade"  # the default [upgrade] program: where releases ship it too


def build_info() -> dict[str, str]:
    """{"version", "commit"}: what this build is, as --version will say it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    version = os.environ.get("ZOS_UPGRADE_BUILD_VERSION") or str(project["version"])
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"version": version, "commit": commit or "unknown"}


def build_exe(out: Path, info: dict[str, str]) -> Path:
    """PyInstaller one-file build of the CLI into ``out``, stamped with ``info``."""
    BUILD_FILE.unlink(missing_ok=True)  # the executable's stamp is its last line, not this file
    work = WORK / "pyinstaller"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK) as staging:
        _run([sys.executable, "-m", "PyInstaller", *_PYINSTALLER_ARGS, "--distpath", staging,
              "--workpath", str(work), "--specpath", str(work), str(PACKAGING / "entry.py")])
        built = Path(staging) / "zos-upgrade"
        write_stamp(built, info)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, out)
    return out


def stamp_copy(exe: Path, out: Path, version: str, commit: str | None = None) -> Path:
    """A copy of ``exe`` that says it is ``version``: one build, two programs (docs/releasing.md)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.copy2(exe, tmp)
    write_stamp(tmp, {"version": version, "commit": commit or "unknown"})
    os.replace(tmp, out)
    return out


def build_python(out: Path, info: dict[str, str]) -> list[Path]:
    """The wheel and the sdist (no build isolation: offline, with the venv's setuptools)."""
    before = set(out.glob("*"))
    BUILD_FILE.write_text(json.dumps(info, sort_keys=True) + "\n")
    try:
        _run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out),
              str(REPO)])
    finally:
        BUILD_FILE.unlink(missing_ok=True)
    return sorted(set(out.glob("*")) - before)


def build_deb(exe: Path, out: Path, info: dict[str, str]) -> Path:
    """A Debian package of the executable, the example config and the three service files."""
    arch = subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()
    version = info["version"]
    with tempfile.TemporaryDirectory(dir=WORK) as staging:
        root = Path(staging) / "root"
        _install(exe, root / PROGRAM, 0o755)
        for rel, source, mode in _DEB_FILES:
            _install(PACKAGING / source, root / rel, mode)
        control = root / "DEBIAN"
        control.mkdir(mode=0o755)
        size_kib = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) // 1024 + 1
        (control / "control").write_text(
            f"Package: zos-upgrade\nVersion: {version}\nArchitecture: {arch}\n"
            "Maintainer: zos-upgrade developers <zos-upgrade@localhost>\nSection: admin\nPriority: optional\n"
            f"Installed-Size: {size_kib}\n"
            "Description: keeps a 0-OS node on the newest release (the 0-OS upgrade module)\n"
            " One self-contained executable, /bin/zos-upgrade (no Python needed), with an example\n"
            f" config and service files for systemd, supervisord and zinit. Built from {info['commit']}.\n")
        (control / "conffiles").write_text("/etc/zos-upgrade/config.toml.example\n")
        deb = out / f"zos-upgrade_{version}_{arch}.deb"
        out.mkdir(parents=True, exist_ok=True)
        _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(root), str(deb)])
    return deb


def _install(source: Path, dest: Path, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    shutil.copyfile(source, dest)
    dest.chmod(mode)


def _run(cmd: list[str]) -> None:
    started = time.monotonic()
    subprocess.run(cmd, check=True, cwd=REPO)
    print(f"built in {time.monotonic() - started:.1f}s: {' '.join(cmd[:4])} ...", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("all")
    exe = sub.add_parser("exe")
    exe.add_argument("--out", type=Path, default=DIST / "zos-upgrade")
    stamp = sub.add_parser("stamp")
    stamp.add_argument("exe", type=Path)
    stamp.add_argument("--version", required=True)
    stamp.add_argument("--commit")
    stamp.add_argument("--out", type=Path)
    python = sub.add_parser("python")
    python.add_argument("--out", type=Path, default=DIST, help="the folder the wheel and sdist go to")
    deb = sub.add_parser("deb")
    deb.add_argument("--exe", type=Path, default=DIST / "zos-upgrade")
    deb.add_argument("--out", type=Path, default=DIST, help="the folder the .deb goes to")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    info = build_info()
    if args.what == "stamp":
        print(stamp_copy(args.exe, args.out or args.exe, args.version, args.commit))
        return 0
    made: list[Path] = []
    if args.what in ("all", "exe"):
        made.append(build_exe(args.out if args.what == "exe" else DIST / "zos-upgrade", info))
    if args.what in ("all", "python"):
        made += build_python(args.out if args.what == "python" else DIST, info)
    if args.what in ("all", "deb"):
        made.append(build_deb(args.exe if args.what == "deb" else DIST / "zos-upgrade",
                              args.out if args.what == "deb" else DIST, info))
    for path in made:
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
