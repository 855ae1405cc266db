"""Which nodes a release is for: its ``compatible`` tag against the node's ``[node] compatible``.

A release may name the nodes it is for in its flist (``flist pack --tag compatible=NAME``; several
names separated by commas), like RAUC's ``compatible`` or Mender's ``device_type``; a node names
itself in its config. The rule, checked in the ``fetch`` step right after the source verified the
flist file and before any block is fetched (and by ``zos-upgrade check``):

* a release without the tag is for every node (releases packed before this rule keep working);
* a tagged release is for the nodes whose name is one of its names (exact, case-sensitive);
* a node that declares no name takes only untagged releases: a release built for some class of
  node was not shown to fit one that never said what it is, and installing it could leave the
  node unbootable. The refusal says what to set.
"""

from __future__ import annotations

from collections.abc import Mapping

from zos_upgrade.upgrade.errors import UpgradeError

__all__ = ["COMPATIBLE_TAG", "IncompatibleRelease", "check_compatible", "compatible_of"]

COMPATIBLE_TAG = "compatible"


class IncompatibleRelease(UpgradeError):
    """The release declares it is for other nodes than this one."""


def compatible_of(tags: Mapping[str, str]) -> str | None:
    """The ``compatible`` tag among an flist's tags (None: untagged)."""
    value = tags.get(COMPATIBLE_TAG)
    return None if value is None else value.strip()


def check_compatible(release: str | None, node: str | None, source: str) -> None:
    """Raise IncompatibleRelease unless a release tagged ``release`` may go on a node named ``node``."""
    if release is None:
        return
    names = [name.strip() for name in release.split(",") if name.strip()]
    if node is None:
        raise IncompatibleRelease(
            f"release {source} is for compatible={release!r} but this node declares no compatible "
            "name; set `[node] compatible` in its config to one of the release's names if it is one"
        )
    if node not in names:
        raise IncompatibleRelease(
            f"release {source} is for compatible={release!r}, this node is compatible={node!r}; "
            "not installed (a release for other nodes could leave this one unbootable)"
        )
