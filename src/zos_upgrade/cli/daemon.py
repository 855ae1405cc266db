"""`zos-upgrade daemon`: placeholder until issue #7 lands."""

from zos_upgrade.cli._common import placeholder_group

command = placeholder_group("daemon", "Run the node's upgrade loop.", 7)
