"""The one-file program's entry point: the same command line as the ``zos-upgrade`` console script."""

from zos_upgrade.cli import main

main()
