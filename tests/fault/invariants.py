"""What must hold after any crash and a recovery: the node is exactly on one release, and says so.

Each check returns a list of violations (text naming the path or service and what was expected)
instead of raising, so a campaign can count them and print every one with its seed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support.node import tree_digest
from tests.support.supervisord import RunningSupervisord
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.supervisor import StateFamily, UnknownService
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.upgrade.journal import JOURNAL_NAME
from zos_upgrade.upgrade.manifest import ManifestStore, record_of

# every temporary or half-written name the project creates carries one of these marks
STRAY_MARKS = (".zu-new", ".zu-tmp-")


def which_release(root: Path, digests: Mapping[str, Mapping[str, str]]) -> tuple[str | None, list[str]]:
    """The one release whose full tree hash the node has (paths, kinds, modes, link targets, bytes,
    and no path of neither release), or None and what differs from the closest release."""
    tree = tree_digest(root)
    for version, digest in digests.items():
        if digest == tree:
            return version, []
    problems = []
    for version, digest in digests.items():
        diff = sorted(set(tree.items()) ^ set(digest.items()))
        paths = sorted({path for path, _ in diff})
        problems.append(f"node matches no release; vs {version}: {len(paths)} paths differ: {paths[:6]}")
    return None, problems


def check_state(root: Path, state: Path, version: str, fqdn: str) -> list[str]:
    """Manifest, boot files, journal and leftovers agree with a node on ``version`` (``fqdn``)."""
    problems: list[str] = []
    try:
        manifest = ManifestStore(state).load("boot")
    except ZosUpgradeError as exc:
        return [f"boot manifest unreadable: {exc}"]
    if manifest is None:
        return [f"no boot manifest in {state}/manifests while the node holds {version}"]
    if manifest.version != version or manifest.fqdn != fqdn:
        problems.append(
            f"manifest names {manifest.fqdn} {manifest.version}; the files on disk are {fqdn} {version}")
    for rel, record in manifest.files.items():
        actual = record_of(root / rel)
        if actual != record:
            problems.append(f"manifest entry /{rel} is {record}, the node has {actual}")
            break
    name_file, info_file = root / "tmp/flist.name", root / "tmp/flist.info"
    try:
        name = name_file.read_text()
        info = json.loads(info_file.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"boot files unreadable: {exc}")
    else:
        if name != fqdn:
            problems.append(f"/tmp/flist.name says {name!r}, the node holds {fqdn!r}")
        if info.get("name") != fqdn.split("/", 1)[1] or info.get("md5") != manifest.md5:
            problems.append(f"/tmp/flist.info {info} does not describe {fqdn} (md5 {manifest.md5})")
    if (state / JOURNAL_NAME).exists():
        problems.append(f"journal {state / JOURNAL_NAME} still there after recovery")
    backup = state / "backup"
    if backup.exists() and any(backup.rglob("*")):
        problems.append(f"backup left: {sorted(str(p.relative_to(backup)) for p in backup.rglob('*'))[:6]}")
    problems += [f"stray file left: {p}" for p in stray_files(root, state)]
    return problems


def stray_files(*dirs: Path) -> list[Path]:
    return [p for d in dirs for p in d.rglob("*") if any(mark in p.name for mark in STRAY_MARKS)]


def check_services(sd: RunningSupervisord, root: Path, version: str, expected: frozenset[str],
                   timeout: float = 20.0) -> list[str]:
    """The release's services, and only they, run under supervisord, started from its files.

    Recovery returns once services are started, not once they run: wait up to ``timeout``.
    """
    client = SupervisordClient(sd.socket_path, include_dir=sd.include_dir, start_seconds=0)
    deadline = time.monotonic() + timeout
    problems: list[str] = []
    while True:
        problems = asyncio.run(_service_problems(client, sd, root, version, expected))
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.1)


async def _service_problems(client: SupervisordClient, sd: RunningSupervisord, root: Path, version: str,
                            expected: frozenset[str]) -> list[str]:
    problems = []
    known = set(await client.list())
    if known != expected:
        problems.append(f"supervisord runs {sorted(known)}, release {version} has {sorted(expected)}")
    configs = {p.stem for p in sd.include_dir.glob("*.conf")}
    if configs != expected:
        problems.append(f"supervisord configs {sorted(configs)}, release {version} has {sorted(expected)}")
    problems += [f"stray supervisord config left: {p}" for p in stray_files(sd.include_dir)]
    for name in sorted(expected & known):
        try:
            status = await client.status(name)
        except UnknownService:
            continue
        if status.family is not StateFamily.RUNNING:
            problems.append(f"service {name} is {status.state}, expected running")
        started = root / "run" / f"{name}.version"
        seen = started.read_text() if started.exists() else ""
        if seen != version:
            problems.append(
                f"service {name} was started from release {seen or 'nothing'}, expected {version}")
    return problems
