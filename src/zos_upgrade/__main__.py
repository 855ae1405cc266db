"""``python -m zos_upgrade`` runs the command line."""

from zos_upgrade.cli import main

main()
