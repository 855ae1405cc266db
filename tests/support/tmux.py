"""A command run under a real terminal: a private tmux server (its own socket), a fixed-size window,
and the screen as the terminal shows it (``capture-pane``), so tests see what a person would."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

DONE = "__ZU_EXIT__="


def run_in_terminal(cmd: Sequence[str], sock: Path, *, width: int = 80, timeout: float = 60,
                    cwd: Path | None = None) -> tuple[int, list[str]]:
    """Run ``cmd`` in a ``width``-column terminal; (exit code, screen lines with wrapped lines joined)."""
    line = " ".join(shlex.quote(c) for c in cmd)
    shell = f"cd {shlex.quote(str(cwd or Path.cwd()))} && {line}; echo {DONE}$?; sleep 600"
    tmux = ["tmux", "-S", str(sock)]
    _wait_gone(sock)  # a server killed by the previous run on this socket may still be exiting
    subprocess.run([*tmux, "new-session", "-d", "-x", str(width), "-y", "50", shell], check=True, timeout=10)
    try:
        deadline = time.monotonic() + timeout
        while True:
            # -J joins the rows the terminal wrapped: one element per line the program wrote
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-S", "-"], capture_output=True,
                                    text=True, check=True, timeout=10).stdout.splitlines()
            done = [row for row in screen if row.startswith(DONE)]
            if done:
                return int(done[0][len(DONE):]), [row.rstrip() for row in screen[:screen.index(done[0])]]
            if time.monotonic() > deadline:
                raise AssertionError("timed out in the terminal; screen:\n" + "\n".join(screen))
            time.sleep(0.2)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, timeout=10, capture_output=True)
        _wait_gone(sock)


def _wait_gone(sock: Path, timeout: float = 10.0) -> None:
    """Until the tmux server on ``sock`` has exited: ``kill-server`` returns before it has, and a
    ``new-session`` that reaches the dying server fails ("server exited unexpectedly")."""
    deadline = time.monotonic() + timeout
    while sock.exists() and time.monotonic() < deadline:
        probe = subprocess.run(["tmux", "-S", str(sock), "list-sessions"], capture_output=True, timeout=10)
        if probe.returncode != 0 and b"no server running" in probe.stderr + probe.stdout:
            sock.unlink(missing_ok=True)  # a stale socket nobody answers on
            return
        time.sleep(0.1)
