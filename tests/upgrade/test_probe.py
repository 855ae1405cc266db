"""The start-up probe of a self-update's new program (upgrade/probe.py): real child programs, each bad
answer a typed ProgramProbeFailed saying what was wrong, and the marker never left behind."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from zos_upgrade.upgrade.errors import ProgramProbeFailed
from zos_upgrade.upgrade.probe import ProgramProbe

WRITES = ('#!/bin/sh\nprintf \'{"nonce":"%s","version":"9.9.9"}\' "$ZOS_UPGRADE_PROBE" '
          '> "$ZOS_UPGRADE_PROBE_MARKER"\n')


def _program(tmp_path: Path, text: str, mode: int = 0o755) -> Path:
    path = tmp_path / "zos-upgrade"
    path.write_text(text)
    path.chmod(mode)
    return path


def _probe(program: Path, marker: Path, timeout: float = 10.0) -> str:
    return asyncio.run(ProgramProbe(("self-test",), timeout)(program, marker))


def test_a_program_that_writes_its_marker_passes_with_its_version(tmp_path: Path) -> None:
    marker = tmp_path / "marker.json"
    assert _probe(_program(tmp_path, WRITES), marker) == "9.9.9"
    assert not marker.exists()


@pytest.mark.parametrize(("text", "said"), [
    ("#!/bin/sh\nexit 4\n", "exited with status 4 at start-up"),
    ("#!/bin/sh\nexit 0\n", "was not written"),
    ("#!/bin/sh\necho nope > \"$ZOS_UPGRADE_PROBE_MARKER\"\n", "is not JSON"),
    ("#!/bin/sh\necho '{\"nonce\":\"old\",\"version\":\"1\"}' > \"$ZOS_UPGRADE_PROBE_MARKER\"\n",
     "is not this probe's"),
    ("#!/bin/sh\nhead -c 5000 /dev/zero > \"$ZOS_UPGRADE_PROBE_MARKER\"\n", "is over 4096 bytes"),
    ("not a program at all\n", "cannot be started"),
])
def test_each_bad_start_fails_the_probe_saying_why(tmp_path: Path, text: str, said: str) -> None:
    marker = tmp_path / "marker.json"
    with pytest.raises(ProgramProbeFailed, match=said):
        _probe(_program(tmp_path, text), marker)
    assert not marker.exists()


def test_a_program_that_is_not_executable_fails(tmp_path: Path) -> None:
    with pytest.raises(ProgramProbeFailed, match="cannot be started"):
        _probe(_program(tmp_path, WRITES, mode=0o644), tmp_path / "marker.json")


def test_a_program_that_hangs_is_killed_at_the_deadline(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ProgramProbeFailed, match=r"no start-up marker within 0.5s; killed"):
        _probe(_program(tmp_path, "#!/bin/sh\nsleep 60\n"), tmp_path / "marker.json", timeout=0.5)
    assert time.monotonic() - started < 10


def test_a_stale_marker_from_an_earlier_run_does_not_count(tmp_path: Path) -> None:
    marker = tmp_path / "marker.json"
    marker.write_text('{"nonce":"x","version":"1"}')
    with pytest.raises(ProgramProbeFailed, match="was not written"):
        _probe(_program(tmp_path, "#!/bin/sh\nexit 0\n"), marker)
