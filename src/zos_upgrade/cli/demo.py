"""`zos-upgrade demo`: placeholder until issue #7 lands."""

from zos_upgrade.cli._common import placeholder_group

command = placeholder_group("demo", "Run the whole upgrade flow in a temporary sandbox.", 7)
