"""``python -m zos_upgrade.cli`` runs the command line (tests and the demo start children this way)."""

from zos_upgrade.cli import main

main()
