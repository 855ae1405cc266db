"""`zos-upgrade hub`: placeholder until issue #4 lands."""

from zos_upgrade.cli._common import placeholder_group

command = placeholder_group("hub", "Serve a 0-hub compatible hub, or talk to one.", 4)
