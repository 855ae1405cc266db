"""A file-writer child gone wrong, for the pool's tests: says ready, then answers every job with bytes
that are no reply at all. ``WriterPool`` runs it as ``python -m tests.support.garbage_writer``."""

from __future__ import annotations

import marshal
import sys

from zos_upgrade.flist.writer_child import HEADER


def _frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    frames = 0
    while len(head := stdin.read(HEADER.size)) == HEADER.size:
        stdin.read(HEADER.unpack(head)[0])
        frames += 1
        # the first frame is the setup: answer it as a real child would, then the jobs with garbage
        stdout.write(_frame(marshal.dumps(("ready", 0)) if frames == 1 else b"\xffnot marshal"))
        stdout.flush()


if __name__ == "__main__":
    main()
