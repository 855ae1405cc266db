"""A file-writer child gone wrong, for the pool's tests: says ready, then answers every job with bytes
that are no reply at all. ``WriterPool`` runs it as ``python -m tests.support.garbage_writer``."""

from __future__ import annotations

import sys

from zos_upgrade.flist.writer_child import HEADER, read_message, write_message


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    read_message(stdin)  # the setup: answered as a real child would
    write_message(stdout, ("ready", 0))
    while read_message(stdin) is not None:  # every job: bytes that are no reply
        garbage = b"\xffnot marshal"
        stdout.write(HEADER.pack(len(garbage)) + garbage)
        stdout.flush()


if __name__ == "__main__":
    main()
