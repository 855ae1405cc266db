"""Human log lines: field values that read as one value each."""

from __future__ import annotations

import logging

from zos_upgrade.log import HumanFormatter


def test_human_fields_render_dicts_lists_and_spaced_strings_as_json() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "upgrade done", None, None)
    record.__dict__.update(phases={"fetch": 0.5, "apply": 1}, stores=["dir:///a"], reason="a b",
                           version="1.2.0", empty="")
    line = HumanFormatter().format(record)
    assert line.endswith('upgrade done  phases={"fetch": 0.5, "apply": 1} stores=["dir:///a"] reason="a b" '
                         'version=1.2.0 empty=""'), line
