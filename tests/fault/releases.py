"""The two releases every fault scenario moves between, generated from a seed.

Each seed changes what the transaction has to do, so three seeds are three different transactions:
how many files there are and how big (one seed crosses the 512 KiB block size), which shared files
change, which files and directories only one release has, which service config changes, which
services exist in only one release, a symlink whose target moves, a file whose mode changes. Every
pair also differs in the upgrader's own program (so the self-update path and its continuation are
part of every upgrade) and ships a ``migrate`` hook.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tests.support.node import Exe, Link, TreeSpec, service_release, service_yaml

OLD, NEW = "1.0.0", "1.1.0"
# a release whose migrate hook fails: upgrading to it always rolls back (the mid-rollback point)
FAILING = "1.2.0"
VERSIONS = (OLD, NEW)

_COMMON_SERVICES = ("alpha", "beta", "gamma", "delta")


@dataclass(frozen=True)
class ReleasePair:
    seed: int
    trees: dict[str, TreeSpec]            # version -> tree (OLD, NEW, FAILING)
    services: dict[str, frozenset[str]]   # version -> the services it runs

    def fqdn(self, version: str) -> str:
        return f"tf-zos/{flist_name(version)}"


def flist_name(version: str) -> str:
    return f"zos:{version}.fl"


def _size(rng: random.Random, big: bool) -> int:
    return rng.choice((0, 1, 97, 4096, 33_000) + ((600_000,) if big else ()))


def release_pair(root: Path, seed: int, *, small: bool = False) -> ReleasePair:
    """OLD and NEW (and FAILING) for a node whose root is ``root``; ``small`` keeps the file count low
    (the power-loss model replays every durable step, so fewer files mean fewer steps)."""
    rng = random.Random(seed)
    big = not small and seed % 3 == 1
    common = tuple(sorted(rng.sample(_COMMON_SERVICES, k=rng.randint(1, 3))))
    changed_service = rng.choice(common)
    only = {OLD: f"old{seed}", NEW: f"new{seed}"}
    count = rng.randint(2, 3 if small else 6)
    shared = {f"data/s{i}.bin": rng.randbytes(_size(rng, big)) for i in range(count)}
    changed = {path for path in shared if rng.random() < 0.5} or {sorted(shared)[0]}
    tool_exec_in = rng.choice(VERSIONS)  # the release where the tool is executable (a mode change)
    tool = "#!/bin/sh\necho tool\n"
    trees: dict[str, TreeSpec] = {}
    services: dict[str, frozenset[str]] = {}
    for version in VERSIONS:
        names = (*common, only[version])
        extra: dict[str, str | bytes | Exe | Link] = {
            "bin/zos-upgrade": Exe(f"#!/bin/sh\necho zos-upgrade {version} seed {seed}\n"),
            "etc/app.conf": f"version={version}\nseed={seed}\n",
            f"opt/app/only-{version}.txt": version,
            "opt/app/current": Link(f"only-{version}.txt"),
            "opt/app/tool": Exe(tool) if version == tool_exec_in else tool,
            "migrate": Exe('#!/bin/sh\n[ -n "$ZOS_ROOT" ] && [ -n "$ZOS_TO_VERSION" ]\n'),
        }
        for path, data in shared.items():
            extra[path] = data + version.encode() if path in changed else data
        # a directory only this release has (created by one upgrade, removed by the other)
        for i in range(1 if small else rng.randint(1, 3)):
            extra[f"data/{only[version]}/f{i}.bin"] = rng.randbytes(_size(rng, big))
        tree = service_release(root, version, services=names, extra=extra)
        tree[f"etc/zinit/{changed_service}.yaml"] = (
            service_yaml(root, changed_service) + f'env:\n  FLAVOUR: "{version}"\n'
        )
        trees[version] = tree
        services[version] = frozenset(names)
    failing = dict(trees[NEW])
    failing["opt/app/VERSION"] = FAILING + "\n"
    failing["etc/app.conf"] = f"version={FAILING}\n"
    failing["migrate"] = Exe("#!/bin/sh\necho 'migration refused on purpose' >&2\nexit 9\n")
    trees[FAILING] = failing
    services[FAILING] = services[NEW]
    return ReleasePair(seed, trees, services)
