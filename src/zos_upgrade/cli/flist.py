"""`zos-upgrade flist`: placeholder until issue #3 lands."""

from zos_upgrade.cli._common import placeholder_group

command = placeholder_group("flist", "Pack, list, unpack and verify flists (v1 .flist and v2 .fl).", 3)
