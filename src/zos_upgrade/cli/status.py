"""`zos-upgrade status`: placeholder until issue #5 lands."""

from zos_upgrade.cli._common import placeholder_group

command = placeholder_group("status", "Show what this node runs and what the daemon last did.", 5)
