"""`zos-upgrade release`: placeholder until issue #2 lands."""

from zos_upgrade.cli._common import placeholder_group

command = placeholder_group("release", "Sign and publish releases for a release server (publisher).", 2)
