"""`zos-upgrade flist pack | ls | unpack | verify`: exit codes, output, and one real subprocess run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.procs import REPO, zos_upgrade_cmd
from zos_upgrade.cli import cli
from zos_upgrade.cli.flist import parse_store_specs
from zos_upgrade.flist.formats import open_flist

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "flist-v1"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["flist", *args])
    return result.exit_code, result.output


def make_src(root: Path) -> Path:
    src = root / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "motd").write_text("hello\n")
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_bytes(os.urandom(700_000))
    os.chmod(src / "bin" / "tool", 0o755)
    os.symlink("tool", src / "bin" / "alias")
    return src


def block_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("suffix", [".fl", ".flist"])
def test_pack_ls_unpack_verify(tmp_path: Path, suffix: str) -> None:
    src = make_src(tmp_path)
    out = tmp_path / f"rel{suffix}"
    code, text = run("pack", str(src), "-o", str(out), "--store", f"dir://{tmp_path}/blocks",
                     "--tag", "version=1.2.3")
    assert code == 0, text
    assert "6 entries" in text and "3 uploaded" in text

    code, text = run("ls", str(out))
    assert code == 0, text
    lines = [line for line in text.splitlines() if line.startswith(("dir", "file", "link"))]
    assert len(lines) == 6
    assert any(line.startswith("link") and line.endswith("/bin/alias -> tool") for line in lines)
    assert any(line.startswith("file    0755") and line.endswith("700000 /bin/tool") for line in lines)

    code, text = run("ls", "--json", str(out))
    objects = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert {"path": "/etc/motd", "type": "file", "mode": "0644", "size": 6, "target": None}.items() <= next(
        o for o in objects if o["path"] == "/etc/motd").items()
    assert next(o for o in objects if o["path"] == "/bin/alias")["target"] == "tool"

    code, text = run("unpack", str(out), str(tmp_path / "dest"), "--cache", str(tmp_path / "cache"))
    assert code == 0, text
    assert "blocks_fetched=3" in text
    assert (tmp_path / "dest" / "bin" / "tool").read_bytes() == (src / "bin" / "tool").read_bytes()
    assert os.readlink(tmp_path / "dest" / "bin" / "alias") == "tool"

    # the same through file-writer processes, and a worker count the option refuses
    code, text = run("unpack", str(out), str(tmp_path / "dest2"), "--workers", "2")
    assert code == 0, text
    assert "writer_processes=2" in text and "blocks_fetched=3" in text
    assert (tmp_path / "dest2" / "bin" / "tool").read_bytes() == (src / "bin" / "tool").read_bytes()
    code, text = run("unpack", str(out), str(tmp_path / "dest3"), "--workers", "-1")
    assert code == 2 and "--workers" in text and not (tmp_path / "dest3").exists()

    code, text = run("verify", str(out))
    assert code == 0, text
    assert "all 3 blocks of 2 files present and authentic" in text


def test_verify_lists_every_bad_block_and_exits_1(tmp_path: Path) -> None:
    src = make_src(tmp_path)
    out = tmp_path / "rel.fl"
    assert run("pack", str(src), "-o", str(out), "--store", f"dir://{tmp_path}/blocks")[0] == 0
    files = block_files(tmp_path / "blocks")
    files[0].unlink()
    files[1].write_bytes(b"garbage")
    code, text = run("verify", str(out), "--store", f"dir://{tmp_path}/blocks")
    assert code == 1
    reported = [line for line in text.splitlines() if line.startswith(("missing ", "corrupt "))]
    assert sorted(line.split()[1] for line in reported) == sorted([files[0].name, files[1].name])
    assert all(" used by /" in line for line in reported)
    assert "1 missing and 1 corrupt blocks out of 3" in text


def test_ranged_stores_split_blocks_by_first_byte(tmp_path: Path) -> None:
    src = make_src(tmp_path)
    out = tmp_path / "rel.fl"
    code, text = run("pack", str(src), "-o", str(out), "--store", f"00-7f=dir://{tmp_path}/low",
                     "--store", f"80-ff=dir://{tmp_path}/high")
    assert code == 0, text
    assert all(int(p.name[:2], 16) <= 0x7F for p in block_files(tmp_path / "low"))
    assert all(int(p.name[:2], 16) >= 0x80 for p in block_files(tmp_path / "high"))
    assert len(block_files(tmp_path / "low")) + len(block_files(tmp_path / "high")) == 3
    with open_flist(out) as reader:
        assert [(r.start, r.end) for r in reader.routes()] == [(0, 0x7F), (0x80, 0xFF)]
    # unpack finds both halves through the routes recorded in the flist
    code, text = run("unpack", str(out), str(tmp_path / "dest"))
    assert code == 0, text
    assert (tmp_path / "dest" / "etc" / "motd").read_text() == "hello\n"


def test_unpack_with_an_explicit_store_reads_the_golden_v1_flist(tmp_path: Path) -> None:
    code, text = run("unpack", str(GOLDEN / "v1.flist"), str(tmp_path / "dest"),
                     "--store", f"dir://{GOLDEN / 'blocks'}")
    assert code == 0, text
    assert (tmp_path / "dest" / "README.txt").read_text() == "hello flist\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pack", "SRC", "-o", "x.fl", "--store", "not-a-url"], "expected a store URL"),
        (["pack", "SRC", "-o", "x.fl", "--store", "80-10=dir:///x"], "is after its end"),
        (["pack", "SRC", "-o", "x.fl", "--store", "dir:///x", "--tag", "novalue"], "expected key=value"),
        (["pack", "SRC", "--store", "dir:///x"], "Missing option '-o'"),
        (["pack", "SRC", "-o", "x.fl"], "Missing option '--store'"),
        (["ls"], "Missing argument 'FLIST'"),
        (["unpack", "nope.fl", "dest"], "does not exist"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    make_src(tmp_path)
    args = [str(tmp_path / "src") if a == "SRC" else a for a in args]
    code, text = run(*args)
    assert code == 2, text
    assert message in text


def test_failures_exit_1_with_the_reason(tmp_path: Path) -> None:
    src = make_src(tmp_path)
    code, text = run("pack", str(src), "-o", str(src / "inside.fl"), "--store", f"dir://{tmp_path}/b")
    assert (code, "PackError" in text, "inside the source tree" in text) == (1, True, True)

    out = tmp_path / "rel.fl"
    assert run("pack", str(src), "-o", str(out), "--store", f"dir://{tmp_path}/b")[0] == 0
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    code, text = run("unpack", str(out), str(tmp_path / "full"))
    assert (code, "is not empty" in text) == (1, True)

    (tmp_path / "junk.fl").write_bytes(b"this is not an flist at all")
    code, text = run("ls", str(tmp_path / "junk.fl"))
    assert (code, "not an flist" in text) == (1, True)


def test_parse_store_specs_keeps_urls_with_equals_signs() -> None:
    routes = parse_store_specs(["http://h/blocks?a=b", "0a-0F=zdb://h:9900/ns"])
    assert [(r.start, r.end, r.url) for r in routes] == [(0, 255, "http://h/blocks?a=b"),
                                                          (10, 15, "zdb://h:9900/ns")]


def test_the_real_command_in_a_subprocess_is_quiet_off_a_terminal(tmp_path: Path) -> None:
    src = make_src(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    packed = subprocess.run(
        zos_upgrade_cmd("flist", "pack", str(src), "-o", str(tmp_path / "rel.fl"),
                        "--store", f"dir://{tmp_path}/blocks"),
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert packed.returncode == 0, packed.stderr
    # not a terminal: no progress bar, only structured JSON log lines on stderr
    logs = [json.loads(line) for line in packed.stderr.splitlines()]
    assert any(r["msg"] == "flist packed" and r["blocks_uploaded"] == 3 for r in logs)
    unpacked = subprocess.run(
        zos_upgrade_cmd("flist", "unpack", str(tmp_path / "rel.fl"), str(tmp_path / "dest")),
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert unpacked.returncode == 0, unpacked.stderr
    assert (tmp_path / "dest" / "bin" / "tool").read_bytes() == (src / "bin" / "tool").read_bytes()
    failed = subprocess.run(
        zos_upgrade_cmd("flist", "unpack", str(tmp_path / "rel.fl"), str(tmp_path / "dest")),
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert failed.returncode == 1
    assert "is not empty" in failed.stderr


def test_on_a_terminal_progress_is_reported_against_the_right_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    import zos_upgrade.cli.flist as flist_cli

    bars: list[tuple[str, int | None, list[int]]] = []
    real = flist_cli._progress

    @contextlib.contextmanager
    def spy(description: str, total: int | None):  # type: ignore[no-untyped-def]
        steps: list[int] = []
        bars.append((description, total, steps))
        with real(description, total) as advance:
            assert advance is not None  # a real rich bar was made
            yield lambda n: (steps.append(n), advance(n))

    monkeypatch.setattr(flist_cli, "_on_terminal", lambda: True)
    monkeypatch.setattr(flist_cli, "_progress", spy)
    src = make_src(tmp_path)
    out = tmp_path / "rel.fl"
    assert run("pack", str(src), "-o", str(out), "--store", f"dir://{tmp_path}/blocks")[0] == 0
    assert run("unpack", str(out), str(tmp_path / "dest"))[0] == 0
    total = 6 + 700_000
    assert [(d, t, sum(steps)) for d, t, steps in bars] == [("packing", total, total),
                                                            ("unpacking", total, total)]
