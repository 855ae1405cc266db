"""Lazy package exports (lazy.py) and the lazy command line (issue 19 item 5): importing a package or
the CLI loads no transaction stack; every exported name still resolves to its defining module's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

HEAVY = ("httpx", "cramjam", "xxtea", "cryptography", "tuf", "rich", "yaml", "zos_upgrade.flist.blocks",
         "zos_upgrade.hubserver", "zos_upgrade.trust.repository")


def loaded_after(code: str) -> list[str]:
    probe = f"import json, sys; {code}; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return list(json.loads(out))


def test_packages_and_the_cli_import_no_transaction_stack() -> None:
    packages = "zos_upgrade.hub, zos_upgrade.node, zos_upgrade.publisher, zos_upgrade.upgrade, " \
               "zos_upgrade.sources, zos_upgrade.watch, zos_upgrade.cli, zos_upgrade.cli.daemon"
    assert loaded_after(f"import {packages}") == []
    # the probe sees them once a name that needs them is asked for: an empty answer means something
    # (a hub client loads httpx for its first download, the flist package its codecs for a block)
    assert "httpx" in loaded_after("import zos_upgrade.hub as h; h.HubClient('http://127.0.0.1:1')._http")
    assert "cramjam" in loaded_after("from zos_upgrade.flist import decrypt_block")


def test_every_exported_name_resolves_to_its_module() -> None:
    import importlib

    for package in ("hub", "node", "publisher", "upgrade", "sources", "watch"):
        module = importlib.import_module(f"zos_upgrade.{package}")
        for name in module.__all__:
            value = getattr(module, name)
            assert vars(module)[name] is value, (package, name)  # loaded once, then cached
    from zos_upgrade.hub import HubClient
    from zos_upgrade.hub.client import HubClient as Defined

    assert HubClient is Defined
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = importlib.import_module("zos_upgrade.hub").Nope
    with pytest.raises(ImportError):
        exec("from zos_upgrade.node import Nope")


def test_the_lazy_cli_lists_and_runs_every_command() -> None:
    from zos_upgrade.cli import _COMMANDS, cli

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in _COMMANDS:
        assert f"  {name} " in result.output, name
        sub = CliRunner().invoke(cli, [name, "--help"])
        assert sub.exit_code == 0 and "Usage: " in sub.output and name in sub.output, (name, sub.output)
    unknown = CliRunner().invoke(cli, ["nope"])
    assert unknown.exit_code == 2 and "No such command 'nope'" in unknown.output
