"""What a person sees in a real terminal (tmux, 80 columns): log lines never inside a progress bar, one
summary per command, field values that read as one value, the demo's story lines whole."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import REPO, zos_upgrade_cmd
from tests.support.tmux import run_in_terminal

STAMP = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ")


@pytest.fixture
def sock() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="zu-tty-", dir="/tmp") as tmp:  # unix socket paths are short
        yield Path(tmp) / "tmux.sock"


def test_unpack_logs_above_its_progress_bar_and_prints_its_summary_once(tmp_path: Path, sock: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "big").write_bytes(bytes(range(256)) * 12_000)  # 3 MiB: several blocks, several warnings
    (src / "d/x").write_text("hi\n")
    blocks = tmp_path / "blocks"
    code, screen = run_in_terminal(zos_upgrade_cmd("flist", "pack", str(src), "-o", str(tmp_path / "a.fl"),
                                                   "--store", f"dir://{blocks}"), sock, cwd=REPO)
    assert code == 0, screen
    assert [row for row in screen if row.startswith("packed ")] == screen, screen  # the summary, once
    # a first store that refuses connections: every block logs a warning while the bar is drawn
    code, screen = run_in_terminal(zos_upgrade_cmd("flist", "unpack", str(tmp_path / "a.fl"),
                                                   str(tmp_path / "out"), "--store", "http://127.0.0.1:1/",
                                                   "--store", f"dir://{blocks}"), sock, cwd=REPO)
    assert code == 0, screen
    warnings = [row for row in screen if "WARNING" in row]
    assert warnings, screen
    for row in warnings:  # each log line is a line of its own, starting with its stamp
        assert STAMP.match(row) and "━" not in row, row
    # field values with spaces are quoted whole, so `reason=` is one value (the refusal as httpx or
    # a file-writer process's own client words it: either may try the store first)
    quoted = re.compile(r' reason="(ConnectError: |cannot connect to )[^"]*"')
    assert any(quoted.search(row) for row in warnings), warnings
    summaries = [row for row in screen if "unpacked" in row or "materialized" in row]
    assert len(summaries) == 1 and summaries[0].startswith(f"unpacked {tmp_path / 'a.fl'} into "), screen
    assert (tmp_path / "out/big").read_bytes() == (src / "big").read_bytes()


def test_the_demo_story_reads_whole_lines_in_80_columns(sock: Path) -> None:
    code, screen = run_in_terminal(zos_upgrade_cmd("demo"), sock, timeout=110, cwd=REPO)
    assert code == 0, "\n".join(screen)
    story = [row for row in screen if row.startswith("✓ ")]
    assert all(len(row) <= 80 for row in story), story  # no story line needed the terminal to wrap it
    assert story == [
        "✓ hub serving on 127.0.0.1:" + story[0].rpartition(":")[2],
        "✓ supervisord running the (empty) node",
        story[2],  # the release size is the packer's business
        "✓ daemon --once installed 1.0.0; services answer: web 1.0.0, worker 1.0.0",
        "✓ release 1.1.0 packed, latest -> 1.1.0",
        "✓ daemon upgraded to 1.1.0: web answers 1.1.0, worker answers 1.1.0",
        "✓ broken release 1.2.0 packed (its worker dies at start), latest -> 1.2.0",
        "✓ 1.2.0 failed and rolled back: web answers 1.1.0, worker answers 1.1.0",
        "✓ forged 9.9.9: the hub moves latest, signs metadata with its own key",
        "✓ forged 9.9.9 refused by TUF (ForgedMetadata): the node still runs 1.1.0",
        "✓ daemon stopped by SIGTERM (exit 0)",
    ], "\n".join(screen)
    assert re.fullmatch(r"✓ release 1\.0\.0 packed into the hub \(\d.* MiB\), latest -> 1\.0\.0", story[2])
    # the explanations are indented under their story line, never glued to it
    assert "    web changed, NEWS added, legacy.txt removed, a migrate hook" in screen
    assert "    settings migrated to json: 'hello from the demo node'" in screen
    why = screen.index("✓ 1.2.0 failed and rolled back: web answers 1.1.0, worker answers 1.1.0") + 1
    assert screen[why].startswith("    why: boot upgrade demo/zos-demo:latest.fl 1.2.0: ProbationFailed")
    assert sum("demo passed" in row for row in screen) == 1
