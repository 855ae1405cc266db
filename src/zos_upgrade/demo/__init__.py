"""``zos-upgrade demo``: a sample node upgraded, migrated and rolled back in a temporary sandbox."""

from zos_upgrade.demo.runner import run_demo

__all__ = ["run_demo"]
